package log

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/testmysql"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// Logs on MySQL: several frontends on one database, as behind a load
// balancer. Each test has a database of its own (internal/testmysql).

// newMySQLFrontends starts n frontends on one new database, with the same
// key and each its own data directory.
func newMySQLFrontends(t *testing.T, n int, mod func(*Config)) []*testLog {
	t.Helper()
	dsn := testmysql.New(t)
	keyDir := t.TempDir()
	keys, _, err := LoadKeys(keyDir, nil, "test.example/mysql")
	if err != nil {
		t.Fatal(err)
	}
	var out []*testLog
	for range n {
		dir := t.TempDir()
		cfg := Config{Dir: dir, MySQL: dsn, Keys: keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second, RepublishInterval: time.Second}
		if mod != nil {
			mod(&cfg)
		}
		tl := &testLog{t: t, dir: dir, cfg: cfg}
		tl.start()
		t.Cleanup(func() {
			if tl.s != nil {
				tl.close()
			}
		})
		out = append(out, tl)
	}
	return out
}

// The same key sent to three frontends at once is one entry, and each
// frontend answers with its index.
func TestMySQLFrontendsShareIdempotencyKeys(t *testing.T) {
	fe := newMySQLFrontends(t, 3, nil)
	const rounds = 20
	for round := range rounds {
		body := fmt.Appendf(nil, `{"action":"deploy","n":%d}`, round)
		key := fmt.Sprintf("deploy-%d", round)
		var wg sync.WaitGroup
		got := make([]eventResult, 6)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := fe[i%3].post("/v1/events", "application/json", body, "Idempotency-Key", key)
				if r.status != http.StatusOK || json.Unmarshal(r.body, &got[i]) != nil {
					t.Errorf("frontend %d: %d %s", i%3, r.status, r.body)
				}
			}()
		}
		wg.Wait()
		for i, res := range got {
			if res.Index != got[0].Index {
				t.Errorf("round %d: frontend %d answered index %d, frontend 0 %d", round, i%3, res.Index, got[0].Index)
			}
		}
	}
	if n := fe[0].size(); n != rounds {
		t.Errorf("tree size %d, want %d: one entry per key", n, rounds)
	}
	// A different event under a used explicit key is refused by any of them.
	r := fe[2].post("/v1/events", "application/json", []byte(`{"action":"other"}`), "Idempotency-Key", "deploy-0")
	if r.status != http.StatusUnprocessableEntity {
		t.Errorf("reused key on another frontend: %d %s, want 422", r.status, r.body)
	}
	// Implicit ids, batches, across frontends.
	var nd bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&nd, "{\"id\":\"b-%d\",\"action\":\"read\"}\n", i)
	}
	a := fe[0].post("/v1/events", "application/x-ndjson", nd.Bytes())
	b := fe[1].post("/v1/events", "application/x-ndjson", nd.Bytes())
	if a.status != 200 || b.status != 200 {
		t.Fatalf("batches: %d %s / %d %s", a.status, a.body, b.status, b.body)
	}
	var ra, rb struct{ Results []eventResult }
	if json.Unmarshal(a.body, &ra) != nil || json.Unmarshal(b.body, &rb) != nil || len(ra.Results) != 300 || len(rb.Results) != 300 {
		t.Fatalf("batch answers: %s / %s", a.body, b.body)
	}
	for i := range ra.Results {
		if ra.Results[i].Index != rb.Results[i].Index || !rb.Results[i].Duplicate {
			t.Fatalf("event %d: %+v on one frontend, %+v on the other", i, ra.Results[i], rb.Results[i])
		}
	}
	if n := fe[2].size(); n != rounds+300 {
		t.Errorf("tree size %d, want %d", n, rounds+300)
	}
}

// A frontend dies after appending and before completing its claims: a
// retry sent to another frontend waits, the others find the dead one by
// its missing heartbeats, recover its claims from the leaves, and the
// retry gets the first index.
func TestMySQLFrontendDiesRetryElsewhereGetsTheFirstIndex(t *testing.T) {
	fe := newMySQLFrontends(t, 2, func(c *Config) { c.frontendLease = 2 * time.Second })
	fe[0].postEvent(`{"id":"before"}`)
	fe[0].s.afterAppend = func() error { return fmt.Errorf("simulated crash") }
	body := []byte("{\"id\":\"lost-1\"}\n{\"n\":2}\n")
	r := fe[0].post("/v1/events", "application/x-ndjson", body, "Idempotency-Key", "k")
	if r.status != http.StatusInternalServerError {
		t.Fatalf("crashed request answered %d %s", r.status, r.body)
	}
	fe[0].kill()
	start := time.Now()
	r = fe[1].post("/v1/events", "application/x-ndjson", body, "Idempotency-Key", "k")
	if want := `{"results":[{"index":1,"duplicate":true},{"index":2,"duplicate":true}]}`; string(bytes.TrimSpace(r.body)) != want {
		t.Errorf("retry on the other frontend: %d %s, want %s", r.status, r.body, want)
	}
	t.Logf("the retry was answered after %v (lease 2s)", time.Since(start).Round(time.Millisecond))
	if n := fe[1].size(); n != 3 {
		t.Errorf("tree size %d, want 3", n)
	}
}

// The tlog-tiles read API is the same on MySQL: Tessera's driver returns
// the whole stored tile or bundle when a smaller partial one is asked for,
// and the log serves exactly the width asked for.
func TestMySQLServesPartialTilesAtTheirWidth(t *testing.T) {
	fe := newMySQLFrontends(t, 1, nil)
	tl := fe[0]
	var nd bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&nd, "{\"n\":%d}\n", i)
	}
	if r := tl.post("/v1/events", "application/x-ndjson", nd.Bytes()); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// Both bundles exist: 0 full, 1 with 44 entries.
	for _, c := range []struct {
		path    string
		size    int // hashes, or entries
		entries bool
	}{
		{"/tile/0/000", 256, false},
		{"/tile/0/001.p/44", 44, false},
		{"/tile/0/001.p/10", 10, false},
		{"/tile/0/000.p/5", 5, false},
		{"/tile/1/000.p/1", 1, false},
		{"/tile/entries/001.p/44", 44, true},
		{"/tile/entries/001.p/7", 7, true},
		{"/tile/entries/000", 256, true},
	} {
		r := tl.get(c.path)
		if r.status != 200 {
			t.Errorf("%s: %d %s", c.path, r.status, r.body)
			continue
		}
		if !c.entries {
			if len(r.body) != 32*c.size {
				t.Errorf("%s: %d bytes, want %d", c.path, len(r.body), 32*c.size)
			}
			continue
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(r.body); err != nil || len(b.Entries) != c.size {
			t.Errorf("%s: %d entries (%v), want %d", c.path, len(b.Entries), err, c.size)
		}
	}
	for _, p := range []string{"/tile/0/001.p/45", "/tile/0/001", "/tile/entries/002.p/1", "/tile/entries/001.p/45"} {
		if r := tl.get(p); r.status != 404 {
			t.Errorf("%s (past the tree): %d, want 404", p, r.status)
		}
	}
	// The checkpoint is served from the database.
	waitForCheckpoint(t, tl, 300)
	if r := tl.get("/checkpoint"); r.status != 200 || !bytes.Contains(r.body, []byte("\n300\n")) {
		t.Errorf("/checkpoint: %d %s", r.status, r.body)
	}
	_ = layout.TileWidth
}

// A second frontend that brings a key that does not verify the database's
// checkpoint is refused before it writes anything.
func TestMySQLRefusesAFrontendWithAnotherKey(t *testing.T) {
	fe := newMySQLFrontends(t, 1, nil)
	waitForCheckpoint(t, fe[0], 0)
	other, _, err := LoadKeys(t.TempDir(), nil, "test.example/mysql")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fe[0].cfg
	cfg.Dir, cfg.Keys = t.TempDir(), other
	if s, err := New(context.Background(), cfg); err == nil {
		s.Close(context.Background())
		t.Fatal("a frontend with another key started")
	} else {
		t.Logf("refused: %v", err)
	}
	_ = httptest.NewServer
}

// On MySQL, Tessera asks the witnesses while it holds the row lock every
// batch needs. A quorum that stops answering must not stop the writes for
// the witness timeout at every attempt: the witnesses that did not answer
// are skipped, without the network, until they answer a probe, and the
// log publishes witnessed checkpoints again by itself once they do.
func TestMySQLHungWitnessesDoNotStopWrites(t *testing.T) {
	ws := []*fakeWitness{newFakeWitness(t, "a", nil, 0), newFakeWitness(t, "b", nil, 0), newFakeWitness(t, "c", nil, 0)}
	var b strings.Builder
	fe := newMySQLFrontends(t, 1, func(c *Config) {
		b.WriteString("log " + c.Keys.VKeys[0] + "\n")
		for _, w := range ws {
			fmt.Fprintf(&b, "witness %s %s %s\n", w.name, w.vkey, w.hs.URL)
		}
		b.WriteString("group g 2 a b c\nquorum g\n")
		p, err := checkpoint.ParsePolicy([]byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy, c.PolicyText = p, []byte(b.String())
		c.WitnessTimeout = 2 * time.Second
		c.WitnessWaitTimeout = 30 * time.Second
	})
	tl := fe[0]
	witnessed := func(n int) {
		t.Helper()
		r := tl.post("/v1/events?wait=witnessed", "application/json", fmt.Appendf(nil, `{"n":%d}`, n))
		var a witnessedAnswer
		if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
			t.Fatalf("event %d, wait=witnessed: %d %s", n, r.status, r.body)
		}
	}
	witnessed(0)
	for _, w := range ws {
		w.hung.Store(true)
	}
	start := time.Now()
	const n = 200
	for i := range n {
		if r := tl.post("/v1/events", "application/json", fmt.Appendf(nil, `{"n":%d}`, 1000+i)); r.status != 200 {
			t.Fatalf("write with the quorum hung: %d %s", r.status, r.body)
		}
	}
	t.Logf("%d single writes with the quorum hung took %v (witness timeout 2s)", n, time.Since(start).Round(time.Millisecond))
	skipped := 0.0
	for _, w := range ws {
		if v, err := strconv.ParseFloat(tl.metric(`tidemark_log_witness_requests_total{outcome="skipped_down",witness="`+w.name+`"}`), 64); err == nil {
			skipped += v
		}
	}
	if skipped == 0 {
		t.Errorf("no witness request was skipped while the quorum hung")
	}
	for _, w := range ws {
		w.hung.Store(false)
	}
	witnessed(1) // publishing resumes by itself
}

// A frontend whose heartbeats stop reaching the database takes no keyed
// write: the others would take it for dead after the lease and recover its
// claims while it could still append under them (fencing by lease).
func TestMySQLFrontendWithoutHeartbeatTakesNoKeyedWrite(t *testing.T) {
	fe := newMySQLFrontends(t, 1, nil)
	tl := fe[0]
	tl.s.idempotency.lastBeat.Store(time.Now().Add(-time.Minute).UnixNano())
	r := tl.post("/v1/events", "application/json", []byte(`{"id":"fenced"}`))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("keyed write with a stale heartbeat: %d %s, want 503 with Retry-After", r.status, r.body)
	}
	if n := tl.size(); n != 0 {
		t.Fatalf("tree size %d after the refused write", n)
	}
	// The next heartbeat lets writes in again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = tl.post("/v1/events", "application/json", []byte(`{"id":"fenced"}`))
		if r.status == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.status != http.StatusOK {
		t.Fatalf("keyed write after the heartbeat came back: %d %s", r.status, r.body)
	}
}
