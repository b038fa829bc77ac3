package main

// The traps a new user falls into (issue 9, item 8), each tried on the real
// binary as a new user would.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// cliResult is what a finished `tidemark` run left: its two streams apart,
// since stdout must hold only results.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLI runs tidemark with stdin and extra environment variables
// ("NAME=VALUE"; the test's own TIDEMARK_* variables are not passed on).
// A run still going after a minute is killed and fails the test: a start
// that should have been refused is serving instead.
func runCLI(t *testing.T, env []string, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tidemarkBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDEMARK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("tidemark %s was still running after a minute (it should have stopped):\n%s", strings.Join(args, " "), r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// newToken runs `tidemark token NAME` and returns its two lines: the token
// and the tokens-file line.
func newToken(t *testing.T, name string) (token, line string) {
	t.Helper()
	r := runCLI(t, nil, "", "token", name)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 {
		t.Fatalf("tidemark token: %s", r)
	}
	return lines[0], lines[1]
}

func writeTestFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func assertAbsent(t *testing.T, what, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		entries, _ := os.ReadDir(path)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s: the refused start left %s behind (%v; holding %v)", what, path, err, names)
	}
}

// TestSubmitRefusedPrintsNothing: events the log refuses (401 without a
// token, 413 too large) print nothing on stdout and exit 1; the log was
// asked once and appended nothing; real results still print.
func TestSubmitRefusedPrintsNothing(t *testing.T) {
	dir := t.TempDir()
	token, line := newToken(t, "deploy-bot")
	tokens := writeTestFile(t, filepath.Join(dir, "tokens"), line+"\n")
	lp := startLog(t, filepath.Join(dir, "data"), "--tokens", tokens)
	tokenFile := writeTestFile(t, filepath.Join(dir, "token"), token+"\n")

	big := `{"blob":"` + strings.Repeat("x", checkpoint.MaxLeafSize) + `"}`
	for _, tc := range []struct {
		name, stdin, status string
		args                []string
	}{
		{"no token", `{"action":"a"}`, "401", nil},
		{"no token, a batch", "{\"action\":\"a\"}\n{\"action\":\"b\"}\n", "401", nil},
		{"no token, --wait", `{"action":"a"}`, "401", []string{"--wait"}},
		{"too large", big, "413", []string{"--token-file", tokenFile}},
	} {
		r := runCLI(t, nil, tc.stdin, append([]string{"submit", "--log", lp.url()}, tc.args...)...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, tc.status) {
			t.Errorf("%s: want exit 1, nothing on stdout and the %s on stderr; got %s", tc.name, tc.status, r)
		}
		if strings.Contains(r.stderr, "attempts") {
			t.Errorf("%s: a refusal was retried: %s", tc.name, r.stderr)
		}
	}
	r := runCLI(t, nil, `{"action":"a"}`, "submit", "--log", lp.url(), "--token-file", tokenFile)
	if r.code != 0 || r.stdout != "{\"index\":0}\n" {
		t.Errorf("an accepted event: want exit 0 and {\"index\":0} (nothing appended before), got %s", r)
	}
}

// TestSubmitTokenFileHoldsOnlyTheToken: a token file's first line is the
// token. A file holding both lines of `tidemark token` (or only the second,
// or a TIDEMARK_TOKEN holding both) is refused before anything is sent,
// saying which line to keep; the token alone works, from the file or from
// TIDEMARK_TOKEN.
func TestSubmitTokenFileHoldsOnlyTheToken(t *testing.T) {
	dir := t.TempDir()
	token, line := newToken(t, "deploy-bot")
	lp := startLog(t, filepath.Join(dir, "data"), "--tokens", writeTestFile(t, filepath.Join(dir, "tokens"), line+"\n"))
	submit := func(env []string, args ...string) cliResult {
		return runCLI(t, env, `{"action":"a"}`, append([]string{"submit", "--log", lp.url()}, args...)...)
	}
	both := writeTestFile(t, filepath.Join(dir, "both"), token+"\n"+line+"\n")
	if r := submit(nil, "--token-file", both); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "keep only the first one") {
		t.Errorf("token file with both lines: want exit 1 saying to keep only the first line, got %s", r)
	}
	second := writeTestFile(t, filepath.Join(dir, "second"), line+"\n")
	if r := submit(nil, "--token-file", second); r.code != 1 || !strings.Contains(r.stderr, "tokens-file line") {
		t.Errorf("token file with the tokens-file line: want exit 1 saying it is the log's line, got %s", r)
	}
	if r := submit([]string{"TIDEMARK_TOKEN=" + token + "\n" + line}); r.code != 1 || !strings.Contains(r.stderr, "first line") {
		t.Errorf("TIDEMARK_TOKEN with both lines: want exit 1 saying to keep the first line, got %s", r)
	}
	if r := submit(nil, "--token-file", writeTestFile(t, filepath.Join(dir, "token"), token+"\n")); r.code != 0 || r.stdout != "{\"index\":0}\n" {
		t.Errorf("the token alone: %s", r)
	}
	if r := submit([]string{"TIDEMARK_TOKEN=" + token}); r.code != 0 || r.stdout != "{\"index\":1}\n" {
		t.Errorf("TIDEMARK_TOKEN: %s", r)
	}
}

// TestSubmitNotWitnessedExitsThreeWithTheIndexes: with --wait, events that
// are logged but not witnessed in time (the log's 504) are printed with
// their indexes and exit 3, apart from a refusal (1) and a usage mistake (2).
func TestSubmitNotWitnessedExitsThreeWithTheIndexes(t *testing.T) {
	dir := t.TempDir()
	keyFile, vkey := writeLogKey(t, dir, "log")
	_, wvkey, err := checkpoint.GenerateWitnessKey("e2e.test/w1")
	if err != nil {
		t.Fatal(err)
	}
	// The only witness is down: checkpoints go out anyway (fail-open), but
	// none is witnessed.
	policy := writeTestFile(t, filepath.Join(dir, "policy"), fmt.Sprintf("log %s\nwitness w1 %s http://%s\nquorum w1\n", vkey, wvkey, freeAddr(t)))
	lp := startLog(t, filepath.Join(dir, "data"), "--key", keyFile, "--policy", policy, "--witness-fail-open",
		"--checkpoint-interval", "200ms", "--witness-timeout", "200ms", "--witness-wait-timeout", "1s")

	r := runCLI(t, nil, "{\"action\":\"a\"}\n{\"action\":\"b\"}\n", "submit", "--log", lp.url(), "--wait")
	if r.code != 3 || r.stdout != "{\"index\":0}\n{\"index\":1}\n" || !strings.Contains(r.stderr, "do not send them again") {
		t.Errorf("not witnessed: want exit 3 with both indexes on stdout, got %s", r)
	}
	if r := runCLI(t, nil, "{}", "submit", "--wait"); r.code != 2 || r.stdout != "" {
		t.Errorf("no --log: want exit 2, got %s", r)
	}
	if r := runCLI(t, nil, "{}", "submit", "--log", lp.url(), "--no-such-flag"); r.code != 2 || r.stdout != "" {
		t.Errorf("an unknown flag: want exit 2, got %s", r)
	}
}

// TestLogStartFailureCreatesNothing: a log start refused for a taken port,
// a bad tokens file or a bad policy has not created the data directory, its
// key or its state.
func TestLogStartFailureCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	token, line := newToken(t, "deploy-bot")
	tokens := writeTestFile(t, filepath.Join(dir, "tokens"), line+"\n")
	_, otherVKey, _ := checkpoint.GenerateLogKey("e2e.test/log")
	for i, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"port in use", []string{"--listen", busy.Addr().String()}, "couldn't listen"},
		{"admin port in use", []string{"--admin-listen", busy.Addr().String()}, "couldn't listen"},
		{"a token in the tokens file", []string{"--tokens", writeTestFile(t, filepath.Join(dir, "bad-tokens"), token+"\n")}, "NAME sha256:HEX"},
		{"no tokens file", []string{"--tokens", filepath.Join(dir, "missing")}, "tokens"},
		{"bad read tokens", []string{"--tokens", tokens, "--read-tokens", filepath.Join(dir, "missing")}, "tokens"},
		{"bad policy", []string{"--policy", writeTestFile(t, filepath.Join(dir, "bad-policy"), "log nonsense\nquorum none\n")}, "policy"},
		{"policy without the key", []string{"--policy", writeTestFile(t, filepath.Join(dir, "other-policy"), "log "+otherVKey+"\nquorum none\n")}, "tidemark keygen e2e.test/log --out"},
	} {
		data := filepath.Join(dir, fmt.Sprintf("data%d", i))
		args := append([]string{"log", "--data", data, "--origin", "e2e.test/log", "--listen", freeAddr(t)}, tc.args...)
		r := runCLI(t, nil, "", args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: want a failure saying %q, got %s", tc.name, tc.want, r)
		}
		assertAbsent(t, tc.name, data)
	}
}

// TestWitnessStartFailureCreatesNothing: a witness start refused for a
// taken port or a bad --logs or --follow file has not created its key or
// its state.
func TestWitnessStartFailureCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, vkey, _ := checkpoint.GenerateLogKey("e2e.test/log")
	logs := writeTestFile(t, filepath.Join(dir, "logs"), "logs/v0\nvkey "+vkey+"\nqpd 1000\n")
	for i, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"port in use", []string{"--logs", logs, "--listen", busy.Addr().String()}, "couldn't listen"},
		{"admin port in use", []string{"--logs", logs, "--admin-listen", busy.Addr().String()}, "couldn't listen"},
		{"bad --logs", []string{"--logs", writeTestFile(t, filepath.Join(dir, "bad-logs"), "logs/v0\nvkey "+vkey+"\n")}, "line 2"},
		{"missing --logs", []string{"--logs", filepath.Join(dir, "missing")}, "missing"},
		{"bad --follow", []string{"--logs", logs, "--follow", logs}, "want \"log VKEY URL\""},
		{"missing --follow", []string{"--follow", filepath.Join(dir, "missing")}, "missing"},
	} {
		data := filepath.Join(dir, fmt.Sprintf("data%d", i))
		r := runCLI(t, nil, "", append([]string{"witness", "--data", data, "--listen", freeAddr(t)}, tc.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: want a failure saying %q, got %s", tc.name, tc.want, r)
		}
		assertAbsent(t, tc.name, data)
	}
}

// TestLogRefusesAContradictingOrigin: once the log's key exists, an
// --origin (or TIDEMARK_LOG_ORIGIN) naming another origin is refused, not
// silently ignored; the key's own origin, or none, starts the log.
func TestLogRefusesAContradictingOrigin(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	startServer(t, "log", []string{"--data", data, "--origin", "first.example/log"}).stop(t, syscall.SIGTERM)

	for name, tc := range map[string]struct{ env, args []string }{
		"--origin":            {nil, []string{"--origin", "second.example/log"}},
		"TIDEMARK_LOG_ORIGIN": {[]string{"TIDEMARK_LOG_ORIGIN=second.example/log"}, nil},
	} {
		r := runCLI(t, tc.env, "", append([]string{"log", "--data", data, "--listen", freeAddr(t)}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, `"second.example/log"`) || !strings.Contains(r.stderr, `"first.example/log"`) {
			t.Errorf("%s naming another origin: want exit 1 naming both origins, got %s", name, r)
		}
	}
	for _, args := range [][]string{{"--origin", "first.example/log"}, nil} {
		lp := startServer(t, "log", append([]string{"--data", data}, args...))
		lp.stop(t, syscall.SIGTERM)
		if !strings.Contains(lp.out.String(), "origin=first.example/log") {
			t.Errorf("log %v: not running as first.example/log:\n%s", args, lp.out)
		}
	}
}

// TestWitnessRefusesAContradictingName: the same for a witness's --name.
func TestWitnessRefusesAContradictingName(t *testing.T) {
	dir := t.TempDir()
	_, vkey, _ := checkpoint.GenerateLogKey("e2e.test/log")
	logs := writeTestFile(t, filepath.Join(dir, "logs"), "logs/v0\nvkey "+vkey+"\nqpd 1000\n")
	data := filepath.Join(dir, "data")
	startServer(t, "witness", []string{"--data", data, "--logs", logs, "--name", "first.example/w"}).stop(t, syscall.SIGTERM)
	pub := readFile(t, filepath.Join(data, "witness.pub"))

	for name, tc := range map[string]struct{ env, args []string }{
		"--name":                {nil, []string{"--name", "second.example/w"}},
		"TIDEMARK_WITNESS_NAME": {[]string{"TIDEMARK_WITNESS_NAME=second.example/w"}, nil},
	} {
		r := runCLI(t, tc.env, "", append([]string{"witness", "--data", data, "--logs", logs, "--listen", freeAddr(t)}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, `"second.example/w"`) || !strings.Contains(r.stderr, `"first.example/w"`) {
			t.Errorf("%s naming another witness: want exit 1 naming both names, got %s", name, r)
		}
	}
	for _, args := range [][]string{{"--name", "first.example/w"}, nil} {
		startServer(t, "witness", append([]string{"--data", data, "--logs", logs}, args...)).stop(t, syscall.SIGTERM)
	}
	if got := readFile(t, filepath.Join(data, "witness.pub")); got != pub {
		t.Errorf("the witness key changed: %s, was %s", got, pub)
	}
}

// TestEnvVarErrorNamesItselfAndItsValue: a variable that does not parse is
// a usage error (exit 2) that names the variable, its value and what the
// flag wants; nothing is done.
func TestEnvVarErrorNamesItselfAndItsValue(t *testing.T) {
	dir := t.TempDir()
	_, vkey, _ := checkpoint.GenerateLogKey("e2e.test/log")
	policy := writeTestFile(t, filepath.Join(dir, "policy"), "log "+vkey+" http://"+freeAddr(t)+"\nquorum none\n")
	r := runCLI(t, []string{"TIDEMARK_AUDIT_FOLLOW=/etc/tidemark/follow.txt"}, "", "audit", "--policy", policy)
	if r.code != 2 || !strings.Contains(r.stderr, `TIDEMARK_AUDIT_FOLLOW="/etc/tidemark/follow.txt"`) || !strings.Contains(r.stderr, "true or false") {
		t.Errorf("TIDEMARK_AUDIT_FOLLOW=FILE: want exit 2 naming the variable, its value and what it wants, got %s", r)
	}
	r = runCLI(t, []string{"TIDEMARK_KEYGEN_WITNESS=yes please"}, "", "keygen", "--out", filepath.Join(dir, "k"), "e2e.test/log")
	if r.code != 2 || !strings.Contains(r.stderr, `TIDEMARK_KEYGEN_WITNESS="yes please"`) {
		t.Errorf("TIDEMARK_KEYGEN_WITNESS: want exit 2 naming the variable and its value, got %s", r)
	}
	assertAbsent(t, "keygen", filepath.Join(dir, "k.key"))
}

// TestEnvVarsArePerSubcommand: TIDEMARK_<SUBCOMMAND>_<FLAG> sets a flag of
// that subcommand only. An unscoped TIDEMARK_<FLAG> (TIDEMARK_FOLLOW, a file
// to the witness and a switch to audit) is not read: the subcommand says
// which variable to use instead.
func TestEnvVarsArePerSubcommand(t *testing.T) {
	dir := t.TempDir()
	_, vkey, _ := checkpoint.GenerateLogKey("e2e.test/log")
	policy := writeTestFile(t, filepath.Join(dir, "policy"), "log "+vkey+" http://"+freeAddr(t)+"\nquorum none\n")
	follow := writeTestFile(t, filepath.Join(dir, "follow"), "log "+vkey+" http://"+freeAddr(t)+"\n")

	// Exported for a witness, TIDEMARK_FOLLOW does not break audit.
	r := runCLI(t, []string{"TIDEMARK_FOLLOW=" + follow}, "", "audit", "--policy", policy, "--progress", "off")
	if r.code != 2 || !strings.Contains(r.stdout, "result: could not check") ||
		!strings.Contains(r.stderr, "ignoring TIDEMARK_FOLLOW") || !strings.Contains(r.stderr, "use TIDEMARK_AUDIT_FOLLOW") {
		t.Errorf("audit with TIDEMARK_FOLLOW set: want a one-pass check of the (unreachable) log and a warning naming TIDEMARK_AUDIT_FOLLOW, got %s", r)
	}
	// Exported for a log, TIDEMARK_DATA does not steer a witness.
	logData := filepath.Join(dir, "log-data")
	r = runCLI(t, []string{"TIDEMARK_DATA=" + logData}, "", "witness", "--follow", follow, "--listen", freeAddr(t))
	if r.code != 2 || !strings.Contains(r.stderr, "--data DIR is required") || !strings.Contains(r.stderr, "use TIDEMARK_WITNESS_DATA") {
		t.Errorf("witness with TIDEMARK_DATA set: want --data required and a warning naming TIDEMARK_WITNESS_DATA, got %s", r)
	}
	assertAbsent(t, "witness with TIDEMARK_DATA", logData)

	// The scoped variables work.
	data := filepath.Join(dir, "witness-data")
	wp := startServerEnv(t, []string{"TIDEMARK_WITNESS_DATA=" + data, "TIDEMARK_WITNESS_FOLLOW=" + follow}, "witness", nil)
	wp.stop(t, syscall.SIGTERM)
	if _, err := os.Stat(filepath.Join(data, "witness.key")); err != nil {
		t.Errorf("TIDEMARK_WITNESS_DATA was not used: %v\n%s", err, wp.out)
	}
}

// TestAuditWorksOnTheDemosPolicy: the policy the demo writes names the
// log's URL, so `tidemark audit --policy` finds and verifies the demo's log
// with nothing else.
func TestAuditWorksOnTheDemosPolicy(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(tidemarkBin, "demo", "--data", dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	})
	serving := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if strings.Contains(s.Text(), "Serving until Ctrl-C") {
				close(serving)
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case <-serving:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the demo did not start serving:\n%s", stderr.String())
	}
	policy := filepath.Join(dir, "policy.txt")
	for _, args := range [][]string{{"--policy", policy}, {"--policy", policy, "--full"}} {
		r := runCLI(t, nil, "", append([]string{"audit", "--progress", "off"}, args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "result: verified") || !strings.Contains(r.stdout, "witnessed=true") {
			t.Errorf("audit %v on the demo: want exit 0, verified and witnessed, got %s\npolicy:\n%s", args, r, readFile(t, policy))
		}
	}
}
