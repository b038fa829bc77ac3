// Command tidemark runs a Tidemark log, witness or auditor, and holds the
// client tools (keygen, token, submit, verify, search, report). Each subcommand is a
// thin wrapper over a package of this module; run `tidemark help` for the list
// and `tidemark SUBCOMMAND --help` for a subcommand's flags. `tidemark version`
// (or `tidemark --version`) prints the version: see version.go.
//
// Every flag can also be set in the environment as
// TIDEMARK_<SUBCOMMAND>_<FLAG> (upper case, dashes as underscores), e.g.
// TIDEMARK_LOG_DATA for `tidemark log --data` and TIDEMARK_WITNESS_FOLLOW for
// `tidemark witness --follow`; the command line wins. Variables are per
// subcommand because one flag name can mean different things in two
// subcommands, and a variable exported for the log must not steer a witness
// started from the same shell. An unscoped TIDEMARK_<FLAG> is never read: a
// subcommand with that flag prints a line naming the variable to use.
// TIDEMARK_TOKEN, the writer's token for submit, is not a flag and keeps its
// name.
//
// Exit status: 0 success, 1 failure, 2 a mistake in the command line or its
// environment variables. submit and audit say more (their --help).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

type command struct {
	name, args, summary string
	run                 func(args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"log", "--data DIR [flags]", "run a log server", runLog},
		{"witness", "--data DIR --logs FILE [flags]", "run a witness that cosigns consistent checkpoints", runWitness},
		{"keygen", "ORIGIN [--out PREFIX] [--witness]", "write a signer key and its verifier key", runKeygen},
		{"token", "NAME", "make a bearer token and its tokens-file line", runToken},
		{"submit", "--log URL [--wait] [FILE|-]", "send events (JSON or NDJSON) and print their indexes or receipts", runSubmit},
		{"erase", "--log URL --index N --reason TEXT", "erase one entry's event from a commitment log (an admin token)", runErase},
		{"verify", "--policy FILE RECEIPT", "check a receipt offline: log signature, witness quorum, inclusion", runVerify},
		{"search", "--log URL [--actor A ...] [--verify]", "find events by who, what, on what, outcome, when, words; --verify proves hits", runSearch},
		{"reindex", "(--data DIR | --mysql DSN) [--log URL]", "throw the search index away so that the log builds it again", runReindex},
		{"demo", "[--data DIR] [--exit]", "run a log and three witnesses here, post events, verify a receipt", runDemo},
		{"audit", "--policy FILE [--follow] [--full] [flags]", "verify a log independently; alert on misbehaviour", runAudit},
		{"report", "--policy FILE --from T --to T --out F", "verify a log and write evidence of a period for a compliance auditor", runReport},
		{"migrate", "--from DIR --mysql DSN [flags]", "copy a log from its data directory into MySQL or S3, verified", runMigrate},
		{"healthcheck", "URL", "GET URL, exit 0 on a 2xx answer (container healthchecks)", runHealthcheck},
		{"version", "", "print the version of this binary (also --version)", runVersion},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "tidemark: a tamper-evident audit log with public witnessing\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  tidemark %-7s %-40s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun `tidemark SUBCOMMAND --help` for its flags.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "help" || name == "-h" || name == "--help" {
		usage()
		return
	}
	if name == "--version" || name == "-version" {
		name = "version"
	}
	for _, c := range commands {
		if c.name == name {
			if err := c.run(os.Args[2:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return
				}
				var ue usageError
				var ee exitError
				fmt.Fprintf(os.Stderr, "tidemark %s: %v\n", name, err)
				switch {
				case errors.As(err, &ue):
					os.Exit(2)
				case errors.As(err, &ee):
					os.Exit(ee.code)
				}
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "tidemark: unknown subcommand %q\n\n", name)
	usage()
	os.Exit(2)
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError is a failure with an exit status of its own, for subcommands
// whose statuses say more than failure or usage (submit's 3).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
