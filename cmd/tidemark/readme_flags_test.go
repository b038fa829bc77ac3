package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helpFlags is the FlagSet of a subcommand, as `tidemark NAME --help` shows
// it: the subcommand itself defines it and stops at --help.
func helpFlags(t *testing.T, name string) *flag.FlagSet {
	t.Helper()
	var fs *flag.FlagSet
	flagSetMade = func(f *flag.FlagSet) {
		fs = f
		f.SetOutput(io.Discard)
	}
	defer func() { flagSetMade = nil }()
	for _, c := range commands {
		if c.name == name {
			if err := c.run([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("tidemark %s --help: %v, want flag.ErrHelp", name, err)
			}
			if fs == nil || fs.Name() != name {
				t.Fatalf("tidemark %s made no FlagSet of its name", name)
			}
			return fs
		}
	}
	t.Fatalf("no subcommand %s", name)
	return nil
}

// readmeFlagRow is one flag of a flags table in the docs and the default the row
// states for it.
type readmeFlagRow struct {
	flag, def, line string
}

var (
	backticked = regexp.MustCompile("`--([a-z0-9-]+)`")
	parens     = regexp.MustCompile(`\([^()]*\)`)
)

// readmeFlagsTable parses the first "| flag | default | what |" table under
// the heading in the file's text, before any other heading. A row names one
// or more flags (`--a`, `--b` or `--a` / `--b`) and states one default for
// all of them or one each, in order, separated the same way; remarks in
// parentheses are dropped.
func readmeFlagsTable(t *testing.T, file, text, heading string) []readmeFlagRow {
	t.Helper()
	lines := strings.Split(text, "\n")
	i := 0
	for i < len(lines) && lines[i] != heading {
		i++
	}
	if i == len(lines) {
		t.Fatalf("%s: no heading %q", file, heading)
	}
	fence := false
	for i++; i < len(lines) && !strings.HasPrefix(lines[i], "| flag | default |"); i++ {
		if strings.HasPrefix(lines[i], "```") {
			fence = !fence
		}
		if !fence && strings.HasPrefix(lines[i], "#") {
			t.Fatalf("%s: no flags table under %q before %q", file, heading, lines[i])
		}
	}
	if i == len(lines) {
		t.Fatalf("%s: no flags table under %q", file, heading)
	}
	var rows []readmeFlagRow
	for i += 2; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		cells := strings.Split(strings.Trim(lines[i], "|"), "|")
		if len(cells) != 3 {
			t.Fatalf("%s %s: not three cells: %s", file, heading, lines[i])
		}
		var names []string
		for _, m := range backticked.FindAllStringSubmatch(cells[0], -1) {
			names = append(names, m[1])
		}
		if len(names) == 0 {
			t.Fatalf("%s %s: a row without a flag: %s", file, heading, lines[i])
		}
		def := strings.TrimSpace(parens.ReplaceAllString(strings.ReplaceAll(cells[1], "`", ""), ""))
		var defs []string
		if def != "" {
			defs = regexp.MustCompile(`, | / `).Split(def, -1)
		}
		for j, n := range names {
			d := ""
			switch len(defs) {
			case 0:
			case 1:
				d = defs[0]
			case len(names):
				d = defs[j]
			default:
				t.Fatalf("%s %s: %d flags and %d defaults: %s", file, heading, len(names), len(defs), lines[i])
			}
			rows = append(rows, readmeFlagRow{n, strings.TrimSpace(d), lines[i]})
		}
	}
	return rows
}

// readmeNumber reads a number as the docs write it: "4,096", "100,000
// events", "8 MiB".
func readmeNumber(s string) (float64, bool) {
	f := strings.Fields(strings.ReplaceAll(s, ",", ""))
	if len(f) == 0 {
		return 0, false
	}
	n, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, false
	}
	if len(f) > 1 {
		switch f[1] {
		case "KiB":
			n *= 1 << 10
		case "MiB":
			n *= 1 << 20
		case "GiB":
			n *= 1 << 30
		}
	}
	return n, true
}

// defaultAgrees says whether the stated default d is the flag's
// default. A flag whose default is its zero value may be described in
// words ("none", "off", "on --listen", "DIR/log.key": what an empty value
// means), but not with a number or "on"/"true".
func defaultAgrees(f *flag.Flag, d string) bool {
	kind, _ := flag.UnquoteUsage(f)
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		kind = "bool"
	}
	zero := f.DefValue == "" || f.DefValue == "0" || f.DefValue == "0s" || f.DefValue == "false"
	if zero {
		if d == "0" {
			return true
		}
		return !strings.ContainsAny(d, "0123456789") && d != "on" && d != "true"
	}
	switch kind {
	case "bool":
		return (d == "true" || d == "on") == (f.DefValue == "true")
	case "duration":
		want, _ := time.ParseDuration(f.DefValue)
		got, err := time.ParseDuration(strings.ReplaceAll(d, " ", ""))
		return err == nil && got == want
	case "int", "uint", "float":
		want, _ := strconv.ParseFloat(f.DefValue, 64)
		got, ok := readmeNumber(d)
		return ok && got == want
	default:
		return d == f.DefValue
	}
}

// The flags tables of the documentation (docs/running.md for the log,
// docs/witness.md, docs/auditor.md, docs/report.md) and `tidemark SUBCOMMAND --help` agree:
// the same flags, and the defaults the tables state are the flags' defaults.
// (The README once said --batch-age 20 ms while the code said 1 ms.)
func TestReadmeFlagsMatchHelp(t *testing.T) {
	for _, c := range []struct{ subcommand, file, heading string }{
		{"log", "docs/running.md", "# Running it"},
		{"witness", "docs/witness.md", "# Witness"},
		{"audit", "docs/auditor.md", "# Auditor"},
		{"report", "docs/report.md", "# Report"},
	} {
		b, err := os.ReadFile("../../" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		fs := helpFlags(t, c.subcommand)
		rows := readmeFlagsTable(t, c.file, string(b), c.heading)
		where := c.file + " " + c.heading
		inDocs := map[string]bool{}
		for _, r := range rows {
			if inDocs[r.flag] {
				t.Errorf("%s: --%s in two rows", where, r.flag)
			}
			inDocs[r.flag] = true
			f := fs.Lookup(r.flag)
			if f == nil {
				t.Errorf("%s: --%s is not a flag of tidemark %s: %s", where, r.flag, c.subcommand, r.line)
				continue
			}
			if !defaultAgrees(f, r.def) {
				t.Errorf("%s: --%s: the table says the default is %q, tidemark %s --help says %q: %s", where, r.flag, r.def, c.subcommand, f.DefValue, r.line)
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !inDocs[f.Name] {
				t.Errorf("%s: no row for tidemark %s --%s (default %q: %s)", where, c.subcommand, f.Name, f.DefValue, f.Usage)
			}
		})
	}
}

// The matcher catches what it is for.
func TestReadmeFlagDefaultMatcher(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Duration("batch-age", time.Millisecond, "")
	fs.Int64("max-body", 8<<20, "")
	fs.Int("max-inflight", 100_000, "")
	fs.Duration("linger", 0, "")
	fs.String("listen", "127.0.0.1:8080", "")
	fs.String("origin", "", "")
	fs.Bool("search", true, "")
	fs.Bool("init", false, "")
	for _, c := range []struct {
		flag, readme string
		agrees       bool
	}{
		{"batch-age", "1 ms", true},
		{"batch-age", "1ms", true},
		{"batch-age", "20 ms", false},
		{"batch-age", "none", false},
		{"max-body", "8 MiB", true},
		{"max-body", "8388608", true},
		{"max-body", "16 MiB", false},
		{"max-inflight", "100,000 events", true},
		{"max-inflight", "10,000 events", false},
		{"linger", "0", true},
		{"linger", "none", true},
		{"linger", "20 ms", false},
		{"listen", "127.0.0.1:8080", true},
		{"listen", "127.0.0.1:8081", false},
		{"origin", "HOSTNAME/tidemark", true},
		{"search", "true", true},
		{"search", "off", false},
		{"init", "off", true},
		{"init", "on", false},
	} {
		if got := defaultAgrees(fs.Lookup(c.flag), c.readme); got != c.agrees {
			t.Errorf("--%s (default %q) and README %q: agree %v, want %v", c.flag, fs.Lookup(c.flag).DefValue, c.readme, got, c.agrees)
		}
	}
}
