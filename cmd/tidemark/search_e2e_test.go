package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testmysql"
)

// searchCompleteTo is the complete_to of the log's search index.
func searchCompleteTo(t *testing.T, logURL, readToken string) uint64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, logURL+"/v1/search?limit=1", nil)
	if readToken != "" {
		req.Header.Set("Authorization", "Bearer "+readToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/search: %d %s", resp.StatusCode, b)
	}
	var a struct {
		CompleteTo uint64 `json:"complete_to"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return a.CompleteTo
}

// waitIndexed waits until the log's search index covers n entries.
func waitIndexed(t *testing.T, logURL, readToken string, n uint64) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("the search index to cover %d entries", n), func() bool {
		return searchCompleteTo(t, logURL, readToken) >= n
	})
}

const searchE2EEvents = `{"actor":"alice","action":"secret.read","resource":"prod/db/users","outcome":"success"}
{"actor":"bob","action":"secret.read","resource":"prod/db/orders","outcome":"denied","reason":"not on call"}
{"actor":"alice","action":"deploy.create","resource":"staging/api","outcome":"success","note":"hotfix <urgent>"}
`

// hitLines are the lines of hits in `tidemark search`'s output (those
// starting with an index).
func hitLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if regexp.MustCompile(`^\d+  `).MatchString(l) {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestSearchCommand finds events with `tidemark search` on a log with
// three witnesses, pages, prints NDJSON, and proves its hits with
// --verify: against the log's policy they verify; against a policy with
// another log key they do not, and the exit status says so.
func TestSearchCommand(t *testing.T) {
	wl := startWitnessedLog(t, 3, 2)
	if out, code := submitCLI(t, searchE2EEvents, "--log", wl.url()); code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, out)
	}
	waitIndexed(t, wl.url(), "", 3)

	r := runCLI(t, nil, "", "search", "--log", wl.url(), "--actor", "alice")
	hits := hitLines(r.stdout)
	if r.code != 0 || len(hits) != 2 || !strings.HasPrefix(hits[0], "2  ") || !strings.HasPrefix(hits[1], "0  ") {
		t.Fatalf("search --actor alice: want entries 2 and 0, newest first:\n%s", r)
	}
	if f := strings.Split(hits[0], "  "); len(f) != 7 || f[2] != "anonymous" || f[3] != "alice" || f[4] != "deploy.create" || f[5] != "staging/api" || f[6] != "success" {
		t.Errorf("hit line %q: want index, received, source, actor, action, resource, outcome", hits[0])
	}
	r = runCLI(t, nil, "", "search", "--log", wl.url(), "--q", "on call", "--outcome", "den*")
	if hits := hitLines(r.stdout); r.code != 0 || len(hits) != 1 || !strings.Contains(hits[0], "bob") {
		t.Errorf("search --q 'on call' --outcome 'den*': want bob's event:\n%s", r)
	}

	// One page of one, with the cursor of the next; --all follows them.
	r = runCLI(t, nil, "", "search", "--log", wl.url(), "--action", "secret.read", "--limit", "1")
	if hits := hitLines(r.stdout); r.code != 0 || len(hits) != 1 || !strings.Contains(r.stderr, "--cursor ") {
		t.Errorf("--limit 1: want one hit and the next page's cursor:\n%s", r)
	}
	r = runCLI(t, nil, "", "search", "--log", wl.url(), "--action", "secret.read", "--limit", "1", "--all", "--json")
	var got []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var h map[string]any
		if err := json.Unmarshal([]byte(l), &h); err != nil {
			t.Fatalf("--json line %q: %v\n%s", l, err, r)
		}
		got = append(got, h)
	}
	if r.code != 0 || len(got) != 2 || got[0]["index"] != 1.0 || got[1]["index"] != 0.0 || got[0]["event"].(map[string]any)["actor"] != "bob" {
		t.Fatalf("--all --json --limit 1: want entries 1 and 0 as JSON:\n%s", r)
	}

	// Proven, with the log's policy: every hit, "<" in an event included.
	r = runCLI(t, nil, "", "search", "--log", wl.url(), "--actor", "alice", "--verify", "--policy", wl.policy)
	if r.code != 0 || strings.Count(r.stdout, "    verified: in checkpoint") != 2 || !strings.Contains(r.stdout, "cosigned by") || strings.Contains(r.stdout, "NOT VERIFIED") {
		t.Fatalf("--verify with the log's policy: want both hits verified:\n%s", r)
	}
	r = runCLI(t, nil, "", "search", "--log", wl.url(), "--actor", "bob", "--verify", "--policy", wl.policy, "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"verified":true`) {
		t.Fatalf("--verify --json: want \"verified\":true:\n%s", r)
	}

	// A policy trusting another log key: the hits are not this log's, as
	// far as it can tell.
	_, otherKey := writeLogKey(t, t.TempDir(), "other")
	other := filepath.Join(t.TempDir(), "other-policy")
	writePolicy(t, other, []string{otherKey}, wl.witnesses, 2)
	r = runCLI(t, nil, "", "search", "--log", wl.url(), "--actor", "alice", "--verify", "--policy", other)
	if r.code != 1 || strings.Count(r.stdout, "NOT VERIFIED") != 2 || !strings.Contains(r.stderr, "2 of 2 hits did NOT verify") {
		t.Fatalf("--verify with another log's policy: want exit 1 and both hits refused:\n%s", r)
	}
	r = runCLI(t, nil, "", "search", "--log", wl.url(), "--actor", "alice", "--verify", "--policy", other, "--json")
	if r.code != 1 || strings.Count(r.stdout, `"verified":false`) != 2 {
		t.Fatalf("--verify --json with another log's policy: want \"verified\":false twice, exit 1:\n%s", r)
	}

	// Mistakes in the command line.
	for _, args := range [][]string{
		{"search", "--actor", "alice"},
		{"search", "--log", wl.url(), "--verify"},
		{"search", "--log", wl.url(), "--policy", wl.policy},
		{"search", "--log", wl.url(), "--since", "last tuesday"},
		{"search", "--log", wl.url(), "--limit", "0"},
	} {
		if r := runCLI(t, nil, "", args...); r.code != 2 {
			t.Errorf("%q: want exit 2:\n%s", args, r)
		}
	}
}

// TestSearchCommandReadToken searches a log whose entries need a read
// token: refused without one, saying which flag gives it; found with it.
func TestSearchCommandReadToken(t *testing.T) {
	dir := t.TempDir()
	token, line := newToken(t, "reader")
	readTokens := writeTestFile(t, filepath.Join(dir, "read-tokens"), line+"\n")
	tokenFile := writeTestFile(t, filepath.Join(dir, "token"), token+"\n")
	lp := startLog(t, filepath.Join(dir, "data"), "--read-tokens", readTokens, "--checkpoint-interval", "200ms")
	if out, code := submitCLI(t, searchE2EEvents, "--log", lp.url()); code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, out)
	}
	waitIndexed(t, lp.url(), token, 3)
	r := runCLI(t, nil, "", "search", "--log", lp.url(), "--actor", "bob")
	if r.code != 1 || !strings.Contains(r.stderr, "--read-token-file") {
		t.Errorf("search without the read token: want exit 1 naming --read-token-file:\n%s", r)
	}
	r = runCLI(t, nil, "", "search", "--log", lp.url(), "--actor", "bob", "--read-token-file", tokenFile)
	if hits := hitLines(r.stdout); r.code != 0 || len(hits) != 1 || !strings.Contains(hits[0], "bob") {
		t.Errorf("search with the read token: want bob's event:\n%s", r)
	}
}

// TestReindexCommand resets the search index of a running log: with --log
// it shows the rebuild to its end, and search finds the events again.
func TestReindexCommand(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	lp := startLog(t, data, "--checkpoint-interval", "200ms")
	const n = 600 // a few entry bundles
	postEvents(t, lp.url(), n)
	waitIndexed(t, lp.url(), "", n)

	r := runCLI(t, nil, "", "reindex", "--data", data, "--log", lp.url(), "--progress", "lines")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("(it covered %d entries)", n)) ||
		!strings.Contains(r.stderr, fmt.Sprintf("search index: %d/%d entries (100.0%%)", n, n)) ||
		!regexp.MustCompile(`rebuilt: the search index covers \d+ entries \(the log had 600`).MatchString(r.stdout) {
		t.Fatalf("reindex --log: want the reset, progress to 100%% and the end:\n%s", r)
	}
	r = runCLI(t, nil, "", "search", "--log", lp.url(), "--action", "secret.read", "--all")
	if hits := hitLines(r.stdout); r.code != 0 || len(hits) != n/10 {
		t.Fatalf("search after reindex: want %d hits:\n%s", n/10, r)
	}

	// Without --log: reset, and the running log rebuilds it by itself.
	r = runCLI(t, nil, "", "reindex", "--data", data)
	if r.code != 0 || !strings.Contains(r.stdout, "reset ") {
		t.Fatalf("reindex: %s", r)
	}
	waitIndexed(t, lp.url(), "", n)
	r = runCLI(t, nil, "", "search", "--log", lp.url(), "--resource", "prod/db/13")
	if hits := hitLines(r.stdout); r.code != 0 || len(hits) != 1 || !strings.HasPrefix(hits[0], "13  ") {
		t.Fatalf("search after the log rebuilt the index: want entry 13:\n%s", r)
	}

	// A directory without an index, a log that is not there, no store.
	if r := runCLI(t, nil, "", "reindex", "--data", dir); r.code != 1 || !strings.Contains(r.stderr, "no search index at") {
		t.Errorf("reindex of a directory without an index: %s", r)
	}
	if r := runCLI(t, nil, "", "reindex", "--data", data, "--log", "http://"+freeAddr(t)); r.code != 1 || !strings.Contains(r.stderr, "nothing was reset") {
		t.Errorf("reindex with an unreachable --log: %s", r)
	}
	for _, args := range [][]string{{"reindex"}, {"reindex", "--data", data, "--mysql", "u:p@tcp(h:3306)/d"}, {"reindex", "--data", data, "--progress", "loud"}} {
		if r := runCLI(t, nil, "", args...); r.code != 2 {
			t.Errorf("%q: want exit 2:\n%s", args, r)
		}
	}
}

// TestReindexCommandMySQL resets the search tables of a log on MySQL while
// its frontend runs, and follows the rebuild.
func TestReindexCommandMySQL(t *testing.T) {
	l := startMySQLLog(t, 1)
	lp := l.fe[0]
	const n = 300
	postEvents(t, lp.url(), n)
	waitIndexed(t, lp.url(), "", n)
	r := runCLI(t, nil, "", "reindex", "--mysql", l.dsn, "--log", lp.url(), "--progress", "lines")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("(it covered %d entries)", n)) || !strings.Contains(r.stdout, "rebuilt: ") {
		t.Fatalf("reindex --mysql --log: %s", r)
	}
	r = runCLI(t, nil, "", "search", "--log", lp.url(), "--resource", "prod/db/13")
	if hits := hitLines(r.stdout); r.code != 0 || len(hits) != 1 || !strings.HasPrefix(hits[0], "13  ") {
		t.Fatalf("search after reindex: want entry 13:\n%s", r)
	}
	// A database that holds no log is left alone.
	empty := testmysql.New(t)
	if r := runCLI(t, nil, "", "reindex", "--mysql", empty); r.code != 1 || !strings.Contains(r.stderr, "holds no Tidemark log") {
		t.Errorf("reindex of a database without a log: %s", r)
	}
}

// A log without a search index answers 503 for good: said at once, not
// retried.
func TestSearchCommandSearchOff(t *testing.T) {
	lp := startLog(t, t.TempDir(), "--search=false")
	start := time.Now()
	r := runCLI(t, nil, "", "search", "--log", lp.url(), "--actor", "alice")
	if r.code != 1 || !strings.Contains(r.stderr, "no search index") || time.Since(start) > 5*time.Second {
		t.Errorf("search of a log with --search=false: want exit 1 at once, saying why (took %v):\n%s", time.Since(start), r)
	}
}
