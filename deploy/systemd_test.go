package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The units, and the subcommand of tidemark each runs.
var units = map[string]string{
	"tidemark-log.service":     "log",
	"tidemark-witness.service": "witness",
	"tidemark-auditor.service": "audit",
}

const binPath = "/usr/local/bin/tidemark"

// unit is a parsed unit file: each key of each section, its values in order.
type unit map[string]map[string][]string

func (u unit) get(section, key string) []string { return u[section][key] }

func (u unit) one(t *testing.T, name, section, key string) string {
	t.Helper()
	v := u.get(section, key)
	if len(v) != 1 {
		t.Fatalf("%s: want one %s= in [%s], have %q", name, key, section, v)
	}
	return v[0]
}

// parseUnit reads a unit file in systemd's syntax: sections, KEY=VALUE,
// comments (# and ;), lines continued with a trailing backslash.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	var cont string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if cont == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, cont = cont+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not KEY=VALUE in a section: %q", path, i+1, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// tidemark builds the binary once for the package's tests.
func tidemark(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tidemark-deploy-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "tidemark")
		if out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/tidemark").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

var helpFlag = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// helpFlags returns the flags `tidemark SUB --help` lists.
func helpFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	// --help exits with status 0 or 2 depending on the flag package; the
	// usage text is what counts.
	out, _ := exec.Command(tidemark(t), sub, "--help").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 5 {
		t.Fatalf("tidemark %s --help lists %d flags; output:\n%s", sub, len(flags), out)
	}
	return flags
}

// envFlag maps TIDEMARK_<SUB>_<FLAG> back to the flag's name.
func envFlag(sub, env string) (string, bool) {
	prefix := "TIDEMARK_" + strings.ToUpper(sub) + "_"
	if !strings.HasPrefix(env, prefix) {
		return "", false
	}
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(env, prefix), "_", "-")), true
}

// envName matches a TIDEMARK_ variable; one that ends in _ is a pattern
// such as TIDEMARK_LOG_<FLAG>, skipped by namedEnv.
var envName = regexp.MustCompile(`\bTIDEMARK_[A-Z0-9_]+`)

// namedEnv returns the variables text names.
func namedEnv(text []byte) []string {
	var names []string
	for _, n := range envName.FindAllString(string(text), -1) {
		if !strings.HasSuffix(n, "_") {
			names = append(names, n)
		}
	}
	return names
}

// TestSystemdUnitFlags checks that each unit runs the binary at binPath with
// a subcommand and flags that subcommand has, that every TIDEMARK_ variable
// a unit sets or names (comments included) is one the subcommand reads, and
// that the unit's paths agree with its StateDirectory= and
// ConfigurationDirectory=.
func TestSystemdUnitFlags(t *testing.T) {
	for name, sub := range units {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("systemd", name)
			u := parseUnit(t, path)
			flags := helpFlags(t, sub)
			state := "/var/lib/" + u.one(t, name, "Service", "StateDirectory")
			conf := "/etc/" + u.one(t, name, "Service", "ConfigurationDirectory")

			// ExecStart: no quoting or specifiers, so plain fields.
			exec := strings.TrimLeft(u.one(t, name, "Service", "ExecStart"), "-@:+!")
			if strings.ContainsAny(exec, `"'%$`) {
				t.Fatalf("ExecStart=%s: quotes, specifiers and variables are not checked here; keep it plain", exec)
			}
			args := strings.Fields(exec)
			if len(args) < 2 || args[0] != binPath || args[1] != sub {
				t.Fatalf("ExecStart=%s: want %s %s ...", exec, binPath, sub)
			}
			var writable []string
			for i := 2; i < len(args); i++ {
				a := args[i]
				if !strings.HasPrefix(a, "-") {
					t.Errorf("ExecStart: %q is not a flag (tidemark %s takes no positional arguments)", a, sub)
					continue
				}
				f, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !flags[f] {
					t.Errorf("ExecStart: tidemark %s has no flag --%s (see tidemark %s --help)", sub, f, sub)
					continue
				}
				if f == "follow" && sub == "audit" {
					continue // a switch
				}
				if !hasValue && i+1 < len(args) {
					i++
					v = args[i]
				}
				if f == "data" || f == "state" {
					writable = append(writable, v)
				}
			}
			if len(writable) != 1 || writable[0] != state {
				t.Errorf("ExecStart writes to %q; the sandbox lets it write only StateDirectory %s", writable, state)
			}

			// Environment=: defaults for the subcommand's flags, under /etc/<ConfigurationDirectory>.
			for _, line := range u.get("Service", "Environment") {
				for _, kv := range strings.Fields(line) {
					k, v, _ := strings.Cut(strings.Trim(kv, `"`), "=")
					f, ok := envFlag(sub, k)
					if !ok || !flags[f] {
						t.Errorf("Environment=%s: tidemark %s reads no such variable", kv, sub)
						continue
					}
					if strings.HasPrefix(v, "/") && !strings.HasPrefix(v, conf+"/") {
						t.Errorf("Environment=%s: a file outside ConfigurationDirectory %s", kv, conf)
					}
				}
			}
			for _, f := range u.get("Service", "EnvironmentFile") {
				if p := strings.TrimPrefix(f, "-"); !strings.HasPrefix(p, conf+"/") {
					t.Errorf("EnvironmentFile=%s: outside ConfigurationDirectory %s", f, conf)
				}
			}

			// Every TIDEMARK_ variable the file names, in comments too.
			b, _ := os.ReadFile(path)
			for _, env := range namedEnv(b) {
				if f, ok := envFlag(sub, env); !ok || !flags[f] {
					t.Errorf("%s names %s, which tidemark %s does not read", name, env, sub)
				}
			}
		})
	}
}

// TestSystemdDocEnv checks the TIDEMARK_ variables docs/systemd.md names.
func TestSystemdDocEnv(t *testing.T) {
	b, err := os.ReadFile("../docs/systemd.md")
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]map[string]bool{}
	for _, sub := range units {
		flags[sub] = helpFlags(t, sub)
	}
	for _, env := range namedEnv(b) {
		ok := false
		for sub, fl := range flags {
			if f, is := envFlag(sub, env); is && fl[f] {
				ok = true
			}
		}
		if !ok {
			t.Errorf("docs/systemd.md names %s, which no tidemark subcommand reads", env)
		}
	}
}

// need returns the path of a systemd tool, skipping the test without it
// unless CI=true.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is needed (CI=true): install systemd (.ci/run does)", tool)
		}
		t.Skipf("%s not found: install systemd to run this test", tool)
	}
	return p
}

// offlineRoot makes a directory that systemd-analyze can take as --root:
// the host's unit directory (for the targets the units name and the default
// dependencies), the units in etc/systemd/system, the freshly built binary
// at usr/local/bin/tidemark and bin/kill (ExecReload=). systemd need not be
// running: this works in a container, without systemd as PID 1.
func offlineRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	var sys string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "multi-user.target")); err == nil {
			sys = d
			break
		}
	}
	if sys == "" {
		t.Fatal("no systemd unit directory with multi-user.target in /usr/lib/systemd/system or /lib/systemd/system")
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", sys, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	copyFile(t, tidemark(t), filepath.Join(root, "usr/local/bin/tidemark"), 0o755)
	// verify only checks that ExecReload='s command is executable; a
	// minimal image may lack procps.
	if _, err := os.Stat("/bin/kill"); err == nil {
		copyFile(t, "/bin/kill", filepath.Join(root, "bin/kill"), 0o755)
	} else {
		writeFile(t, filepath.Join(root, "bin/kill"), []byte("#!/bin/sh\n"), 0o755)
	}
	for name := range units {
		copyFile(t, filepath.Join("systemd", name), filepath.Join(root, "etc/systemd/system", name), 0o644)
	}
	return root
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, b, mode)
}

func writeFile(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdAnalyze runs systemd's own checks on the units offline:
// `systemd-analyze verify` (unknown sections, keys and values, bad
// syscall groups and capabilities, missing or non-executable commands,
// dependencies that do not load) must print nothing at all, since most of
// its complaints are printed with exit status 0; `systemd-analyze security
// --offline` must rate each unit's exposure at 2.0 or better, so that a
// sandboxing setting dropped by mistake shows.
func TestSystemdAnalyze(t *testing.T) {
	analyze := need(t, "systemd-analyze")
	root := offlineRoot(t)
	var paths []string
	for name := range units {
		paths = append(paths, filepath.Join(root, "etc/systemd/system", name))
	}
	slices.Sort(paths)

	args := append([]string{"verify", "--man=no", "--recursive-errors=no", "--root=" + root}, paths...)
	out, err := exec.Command(analyze, args...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	for _, p := range paths {
		args := []string{"security", "--offline=yes", "--threshold=20", "--no-pager", "--root=" + root, p}
		out, err := exec.Command(analyze, args...).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze %s: %v (exposure over 2.0, or the unit did not load)\n%s", strings.Join(args, " "), err, out)
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Overall exposure level") {
				t.Log(strings.TrimSpace(sc.Text()))
			}
		}
	}
}

// TestSystemdSysusers checks the sysusers.d file with systemd-sysusers
// --dry-run on an empty root: it parses, and it creates the User= and
// Group= of every unit.
func TestSystemdSysusers(t *testing.T) {
	sysusers := need(t, "systemd-sysusers")
	conf, err := filepath.Abs("systemd/tidemark.sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sysusers, "--dry-run", "--root="+t.TempDir(), conf).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers --dry-run: %v\n%s", err, out)
	}
	for _, bad := range []string{"ignoring", "Failed", "Unknown", "rror"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("systemd-sysusers --dry-run complains:\n%s", out)
			break
		}
	}
	for name := range units {
		u := parseUnit(t, filepath.Join("systemd", name))
		user := u.one(t, name, "Service", "User")
		group := u.one(t, name, "Service", "Group")
		if !bytes.Contains(out, []byte("Creating user '"+user+"'")) {
			t.Errorf("%s: User=%s is not made by tidemark.sysusers.conf:\n%s", name, user, out)
		}
		if !bytes.Contains(out, []byte("Creating group '"+group+"'")) {
			t.Errorf("%s: Group=%s is not made by tidemark.sysusers.conf:\n%s", name, group, out)
		}
	}
}
