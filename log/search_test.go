package log

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/witness"
	_ "modernc.org/sqlite"
)

// search asks GET /v1/search and decodes the answer.
func (tl *testLog) search(params string, header ...string) SearchAnswer {
	tl.t.Helper()
	r := tl.get("/v1/search?"+params, header...)
	if r.status != http.StatusOK {
		tl.t.Fatalf("GET /v1/search?%s: %d %s", params, r.status, r.body)
	}
	var a SearchAnswer
	if err := json.Unmarshal(r.body, &a); err != nil {
		tl.t.Fatalf("GET /v1/search?%s: %v\n%s", params, err, r.body)
	}
	return a
}

// indexes are the indexes of an answer's results.
func (a SearchAnswer) indexes() []uint64 {
	var out []uint64
	for _, r := range a.Results {
		out = append(out, r.Index)
	}
	return out
}

// waitIndexed waits until the search index covers the whole tree.
func (tl *testLog) waitIndexed(header ...string) {
	tl.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		size := tl.size()
		if a := tl.search("limit=1", header...); a.CompleteTo >= size {
			return
		}
		if time.Now().After(deadline) {
			tl.t.Fatalf("the search index did not reach the tree size %d in 20 s", size)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSearchFindsEventsOfEveryShape(t *testing.T) {
	tl := newK8sTestLog(t)
	auth := []string{"Authorization", "Bearer " + k8sToken}
	own := tl.postEvent(`{"actor":{"name":"alice"},"action":"secret.read","resource":"prod/db/users","outcome":"success","details":{"ticket":"INC-4242"}}`, auth...)
	tl.postAudit(readFixture(t, "k8s/batch-eventlist.json"))
	if r := tl.post("/v1/logs", "application/json", readFixture(t, "otlp/logs.json"), auth...); r.status != 200 {
		t.Fatalf("OTLP: %d %s", r.status, r.body)
	}
	if r := tl.post("/add", "application/octet-stream", []byte("raw bytes that name alice"), auth...); r.status != 200 {
		t.Fatalf("/add: %d %s", r.status, r.body)
	}
	tl.waitIndexed()

	a := tl.search("actor=alice")
	if len(a.Results) == 0 || a.Results[len(a.Results)-1].Index != own.Index {
		t.Fatalf("actor=alice: %v, want the first event (%d) last", a.indexes(), own.Index)
	}
	r := a.Results[len(a.Results)-1]
	if r.Source != "kube-apiserver" || !strings.Contains(string(r.Event), "INC-4242") {
		t.Fatalf("hit %+v", r)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.Received); err != nil {
		t.Fatalf("received %q: %v", r.Received, err)
	}
	// Kubernetes (user.username), OpenTelemetry (attributes) and words.
	if a := tl.search("actor=alice@example.com&resource=payments/*"); len(a.Results) == 0 {
		t.Fatal("no Kubernetes event of alice@example.com in payments")
	}
	for _, res := range tl.search("actor=alice@example.com").Results {
		if !strings.Contains(string(res.Event), `"username":"alice@example.com"`) {
			t.Fatalf("hit %d is not alice's: %s", res.Index, res.Event)
		}
	}
	if a := tl.search("actor=mallory&q=permission+denied"); len(a.Results) != 1 {
		t.Fatal("no OTLP record of mallory")
	}
	if a := tl.search("q=INC-4242"); !slices.Equal(a.indexes(), []uint64{own.Index}) {
		t.Fatalf("q=INC-4242: %v", a.indexes())
	}
	// A raw entry is no event: it is never a hit.
	for _, res := range tl.search("q=raw").Results {
		t.Fatalf("a raw entry is a hit: %d", res.Index)
	}
}

func TestSearchPagesNewestFirst(t *testing.T) {
	tl := newTestLog(t, nil)
	var want []uint64
	for i := range 7 {
		want = append(want, tl.postEvent(fmt.Sprintf(`{"actor":"pat","n":%d}`, i)).Index)
		tl.postEvent(`{"actor":"someone-else"}`)
	}
	slices.Reverse(want)
	tl.waitIndexed()
	var got []uint64
	params := "actor=pat&limit=3"
	pages := 0
	for {
		a := tl.search(params)
		pages++
		got = append(got, a.indexes()...)
		if a.Next == "" {
			break
		}
		params = "actor=pat&limit=3&cursor=" + url.QueryEscape(a.Next)
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("pages %d: %v, want %v", pages, got, want)
	}
}

func TestSearchNeedsAReadTokenWhenTheLogHasThem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "read")
	writeFile(t, path, TokenLine("auditor", "read-secret")+"\n")
	readTokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	tl := newTestLog(t, func(c *Config) { c.ReadTokens = readTokens })
	tl.postEvent(`{"actor":"alice"}`)
	if r := tl.get("/v1/search?actor=alice"); r.status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d %s", r.status, r.body)
	}
	if r := tl.get("/v1/search?actor=alice", "Authorization", "Bearer wrong"); r.status != http.StatusForbidden {
		t.Fatalf("with a wrong token: %d %s", r.status, r.body)
	}
	tl.waitIndexed("Authorization", "Bearer read-secret")
	if a := tl.search("actor=alice", "Authorization", "Bearer read-secret"); len(a.Results) != 1 {
		t.Fatalf("with the token: %v", a.indexes())
	}
}

// The index is derived, never trusted: an index edited to point a name at
// someone else's event, or at entries the tree does not hold, makes no
// false hit.
func TestSearchChecksEveryHitAgainstTheLeaf(t *testing.T) {
	tl := newTestLog(t, nil)
	bob := tl.postEvent(`{"actor":"bob","action":"secret.read"}`)
	tl.waitIndexed()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(tl.dir, stateDir, searchFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE search_entries SET actor = 'mallory' WHERE idx = ` + fmt.Sprint(bob.Index),
		`INSERT INTO search_entries VALUES (1000000, 0, 'anonymous', 'mallory', '', '', '')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if a := tl.search("actor=mallory"); len(a.Results) != 0 {
		t.Fatalf("actor=mallory after the index was edited: %v", a.indexes())
	}
}

func TestSearchRefusesBadQueries(t *testing.T) {
	tl := newTestLog(t, nil)
	for _, q := range []string{"limit=100000", "since=monday", "cursor=x", "actor=a&actor=b", "nope=1"} {
		r := tl.get("/v1/search?" + q)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "error") {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
	off := newTestLog(t, func(c *Config) { c.NoSearch = true })
	if r := off.get("/v1/search?actor=a"); r.status != http.StatusServiceUnavailable {
		t.Errorf("search off: %d %s", r.status, r.body)
	}
}

// An index thrown away (tidemark reindex) while the log runs is built again
// from the log, and a restarted log goes on from where its index was.
func TestSearchIndexIsRebuiltFromTheLog(t *testing.T) {
	tl := newTestLog(t, nil)
	for i := range 300 {
		tl.postEvent(fmt.Sprintf(`{"actor":"user-%d"}`, i%3))
	}
	tl.waitIndexed()
	if err := tl.s.search.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	tl.waitIndexed()
	if a := tl.search("actor=user-1&limit=500"); len(a.Results) != 100 {
		t.Fatalf("after a reset: %d hits, want 100", len(a.Results))
	}
	tl.close()
	tl.start()
	tl.postEvent(`{"actor":"user-1"}`)
	tl.waitIndexed()
	if a := tl.search("actor=user-1&limit=500"); len(a.Results) != 101 {
		t.Fatalf("after a restart: %d hits, want 101", len(a.Results))
	}
}

func TestPublicReadsAllowOtherOrigins(t *testing.T) {
	tl := newTestLog(t, nil)
	tl.postEvent(`{"a":1}`)
	waitForCheckpoint(t, tl, 1)
	for _, p := range []string{"/checkpoint", "/v1/policy", "/v1/status", "/v1/search", "/tile/entries/000.p/1"} {
		r := tl.get(p, "Origin", "https://elsewhere.example")
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: %d, Access-Control-Allow-Origin %q", p, r.status, r.header.Get("Access-Control-Allow-Origin"))
		}
		req, _ := http.NewRequest(http.MethodOptions, tl.hs.URL+p, nil)
		req.Header.Set("Origin", "https://elsewhere.example")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		pre := tl.do(req)
		if pre.status != http.StatusNoContent || !strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("preflight of %s: %d %v", p, pre.status, pre.header)
		}
	}
	// Writes are not for pages of other origins.
	r := tl.post("/v1/events", "application/json", []byte(`{"a":2}`), "Origin", "https://elsewhere.example")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("POST /v1/events allows other origins")
	}
}

// GET /v1/status shows what each witness of the policy last cosigned, as
// the witness itself answers, verifiable with the witness's key.
func TestStatusShowsWhatEachWitnessCosigned(t *testing.T) {
	logsDir := t.TempDir()
	var ws []*witness.Witness
	var urls []string
	tl := newTestLog(t, func(c *Config) {
		logs := filepath.Join(logsDir, "logs")
		writeFile(t, logs, "logs/v0\nvkey "+c.Keys.VKeys[0]+"\nqpd 1000000\n")
		var b strings.Builder
		b.WriteString("log " + c.Keys.VKeys[0] + "\n")
		for i := 1; i <= 3; i++ {
			w, err := witness.New(context.Background(), witness.Config{Dir: filepath.Join(logsDir, fmt.Sprint("w", i)), Name: fmt.Sprintf("w%d.test", i), LogsFile: logs})
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(w.Handler(false))
			t.Cleanup(func() { hs.Close(); w.Close() })
			ws, urls = append(ws, w), append(urls, hs.URL)
			fmt.Fprintf(&b, "witness w%d %s %s\n", i, w.VKey(), hs.URL)
		}
		// The third witness is down: it is shown with why.
		b.WriteString("group g 2 w1 w2 w3\nquorum g\n")
		p, err := checkpoint.ParsePolicy([]byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy, c.PolicyText = p, []byte(b.String())
	})
	res := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"actor":"alice"}`))
	if res.status != 200 {
		t.Fatalf("wait=witnessed: %d %s", res.status, res.body)
	}
	r := tl.get("/v1/status")
	var st Status
	if err := json.Unmarshal(r.body, &st); r.status != 200 || err != nil {
		t.Fatalf("GET /v1/status: %d %v %s", r.status, err, r.body)
	}
	if st.Origin != "test.example/log" || st.Size != 1 || !strings.HasPrefix(st.Checkpoint, "test.example/log\n1\n") || st.Published == "" || len(st.Rate) == 0 {
		t.Fatalf("status %+v", st)
	}
	if len(st.Witnesses) != 3 {
		t.Fatalf("witnesses %+v", st.Witnesses)
	}
	cosigned := 0
	for i, w := range st.Witnesses {
		if w.Name != fmt.Sprint("w", i+1) || w.URL != urls[i] {
			t.Errorf("witness %d: %+v", i, w)
		}
		if w.Checkpoint == "" {
			continue
		}
		v, err := checkpoint.NewWitnessVerifier(ws[i].VKey())
		if err != nil {
			t.Fatal(err)
		}
		cos, err := checkpoint.Cosignatures([]byte(w.Checkpoint), v)
		if err != nil || len(cos) != 1 {
			t.Errorf("witness %s's checkpoint does not carry its cosignature: %v\n%s", w.Name, err, w.Checkpoint)
		}
		cosigned++
	}
	if cosigned < 2 {
		t.Fatalf("%d witnesses show a cosigned checkpoint, want the quorum (2): %+v", cosigned, st.Witnesses)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// On MySQL the index is tables of the log's database: two frontends
// index the same log once between them, and either answers for events
// written through the other.
func TestSearchOnMySQLFrontends(t *testing.T) {
	fe := newMySQLFrontends(t, 2, nil)
	for i := range 600 {
		fe[i%2].postEvent(fmt.Sprintf(`{"actor":"user-%d","action":"deploy"}`, i%6))
	}
	for _, tl := range fe {
		tl.waitIndexed()
	}
	for _, tl := range fe {
		if a := tl.search("actor=user-4&limit=500"); len(a.Results) != 100 {
			t.Fatalf("actor=user-4: %d hits, want 100", len(a.Results))
		}
		if a := tl.search("q=deploy&actor=user-*&limit=7"); len(a.Results) != 7 || a.Next == "" {
			t.Fatalf("q=deploy: %d hits, next %q", len(a.Results), a.Next)
		}
	}
	var rows int
	if err := fe[0].s.backend.db.QueryRow(`SELECT COUNT(*) FROM tidemark_search_entries`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 600 {
		t.Fatalf("%d rows for 600 events", rows)
	}
}

// Candidates that the leaves refuse cost bundle reads but add nothing: an
// answer stops when its reads pass maxSearchRead, and its "next" goes on
// from there, so paging still reaches every hit.
func TestSearchBoundsTheBundlesOneAnswerReads(t *testing.T) {
	tl := newTestLog(t, nil)
	var nd strings.Builder
	for i := range 600 {
		fmt.Fprintf(&nd, `{"actor":"user-%d"}`+"\n", i)
	}
	if r := tl.post("/v1/events", "application/x-ndjson", []byte(nd.String())); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	real := tl.postEvent(`{"actor":"mallory"}`).Index
	tl.waitIndexed()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(tl.dir, stateDir, searchFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE search_entries SET actor = 'mallory' WHERE idx < 600`); err != nil {
		t.Fatal(err)
	}
	defer func(old int) { maxSearchRead = old }(maxSearchRead)
	maxSearchRead = 1 // every answer stops after its first bundle
	var got []uint64
	params, pages := "actor=mallory&limit=500", 0
	for ; pages < 10; pages++ {
		a := tl.search(params)
		got = append(got, a.indexes()...)
		if a.Next == "" {
			break
		}
		params = "actor=mallory&limit=500&cursor=" + a.Next
	}
	if !slices.Equal(got, []uint64{real}) || pages < 2 || pages == 10 {
		t.Fatalf("%d pages, hits %v; want the one real hit over a few short pages", pages, got)
	}
}
