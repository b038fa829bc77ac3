package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// newFlags returns a FlagSet whose usage names the subcommand and the
// environment variables of its flags.
func newFlags(name, args, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if flagSetMade != nil {
		defer flagSetMade(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tidemark %s %s\n\n%s\n", name, args, about)
		var example string
		fs.VisitAll(func(f *flag.Flag) {
			if example == "" {
				example = envName(name, f.Name)
			}
		})
		if example == "" {
			return
		}
		fmt.Fprintf(fs.Output(), "\nFlags (each also %s in the environment, e.g. %s; the command line wins):\n", envName(name, "<FLAG>"), example)
		fs.PrintDefaults()
	}
	return fs
}

// flagSetMade, when set (by a test), is given each FlagSet newFlags makes,
// once its usage is set: the test sees a subcommand's flags as it defines them.
var flagSetMade func(*flag.FlagSet)

// envName is the environment variable of a flag of a subcommand:
// TIDEMARK_<SUBCOMMAND>_<FLAG>, upper case, dashes as underscores. Variables
// are per subcommand because flags of one name mean different things in
// different subcommands (--follow is a file to the witness and a switch to
// audit), and a variable exported for one server must not steer another
// started from the same shell. With subcommand "", it is the unscoped name
// TIDEMARK_<FLAG>, which is never read.
func envName(subcommand, flagName string) string {
	n := "TIDEMARK_"
	if subcommand != "" {
		n += subcommand + "_"
	}
	return strings.ToUpper(strings.ReplaceAll(n+flagName, "-", "_"))
}

// parse parses args, allowing flags after positional arguments, then fills
// flags that the command line did not set from TIDEMARK_<SUBCOMMAND>_<FLAG>.
// An unscoped TIDEMARK_<FLAG> naming one of the subcommand's flags is not
// used: a line on stderr names the variable to use instead. Mistakes are
// usageErrors (exit status 2).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(fs.Name(), f.Name)
		if unscoped := envName("", f.Name); isSet(unscoped) {
			fmt.Fprintf(os.Stderr, "tidemark %s: ignoring %s: environment variables are per subcommand, use %s\n", fs.Name(), unscoped, env)
		}
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(env); ok {
			// fs.Set, not f.Value.Set: the flag counts as set (fs.Visit).
			if e := fs.Set(f.Name, v); e != nil {
				err = usageError{fmt.Sprintf("environment variable %s=%q is not a valid --%s (%v): want %s, or unset it", env, v, f.Name, e, valueKind(f))}
			}
		}
	})
	return positional, err
}

func isSet(env string) bool {
	_, ok := os.LookupEnv(env)
	return ok
}

// valueKind says what a flag takes, for error messages.
func valueKind(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "true or false"
	}
	switch name, _ := flag.UnquoteUsage(f); name {
	case "duration":
		return "a duration such as 500ms, 5s or 2m"
	case "int", "uint":
		return "a whole number"
	case "float":
		return "a number"
	default:
		return "a " + name
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
