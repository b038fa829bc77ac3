package log

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"golang.org/x/mod/sumdb/note"
)

// witnessedAnswer is the JSON of POST /v1/events?wait=witnessed.
type witnessedAnswer struct {
	Index   uint64              `json:"index"`
	Receipt *checkpoint.Receipt `json:"receipt"`
	Results []witnessedResult   `json:"results"`
	Error   string              `json:"error"`
}

func (tl *testLog) policy() *checkpoint.Policy {
	tl.t.Helper()
	r := tl.get("/v1/policy")
	if r.status != 200 {
		tl.t.Fatalf("GET /v1/policy: %d %s", r.status, r.body)
	}
	p, err := checkpoint.ParsePolicy(r.body)
	if err != nil {
		tl.t.Fatalf("the served policy does not parse: %v\n%s", err, r.body)
	}
	return p
}

func TestWaitWitnessedWithoutPolicy(t *testing.T) {
	tl := newTestLog(t, nil)
	p := tl.policy()
	if p.Quorum != "none" || p.Origin() != "test.example/log" {
		t.Fatalf("implicit policy: quorum %q origin %q", p.Quorum, p.Origin())
	}
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"action":"deploy"}`))
	var a witnessedAnswer
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
		t.Fatalf("wait=witnessed: %d %s", r.status, r.body)
	}
	c, _, err := a.Receipt.Verify(p)
	if err != nil {
		t.Fatalf("receipt does not verify: %v\n%s", err, a.Receipt.Proof)
	}
	if l, err := checkpoint.ParseLeaf(a.Receipt.Leaf); err != nil || string(l.Event) != `{"action":"deploy"}` {
		t.Fatalf("receipt leaf: %v %s", err, a.Receipt.Leaf)
	}
	if c.Size <= a.Index {
		t.Fatalf("checkpoint size %d does not cover index %d", c.Size, a.Index)
	}

	r = tl.post("/v1/events?wait=witnessed", "application/x-ndjson", []byte("{\"a\":1}\n{\"a\":2}\n"))
	a = witnessedAnswer{}
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || len(a.Results) != 2 {
		t.Fatalf("NDJSON wait=witnessed: %d %s", r.status, r.body)
	}
	for _, res := range a.Results {
		if res.Receipt == nil || res.Receipt.Index != res.Index {
			t.Fatalf("result %+v has no receipt for its index", res)
		}
		if _, _, err := res.Receipt.Verify(p); err != nil {
			t.Fatalf("receipt of %d: %v", res.Index, err)
		}
	}

	// Any integrated entry has a receipt.
	r = tl.get("/v1/receipt/1")
	rc, err := checkpoint.ParseReceipt(r.body)
	if r.status != 200 || err != nil {
		t.Fatalf("GET /v1/receipt/1: %d %s %v", r.status, r.body, err)
	}
	if _, _, err := rc.Verify(p); err != nil || rc.Index != 1 {
		t.Fatalf("receipt 1: %v", err)
	}
	for path, want := range map[string]int{
		"/v1/receipt/3":  404,
		"/v1/receipt/01": 400,
		"/v1/receipt/-1": 400,
		"/v1/receipt/x":  400,
	} {
		if r := tl.get(path); r.status != want {
			t.Errorf("GET %s: %d %s, want %d", path, r.status, r.body, want)
		}
	}
	if r := tl.post("/v1/events?wait=now", "application/json", []byte(`{}`)); r.status != 400 {
		t.Errorf("wait=now: %d, want 400", r.status)
	}
	if tl.size() != 3 {
		t.Errorf("log has %d entries, want 3 (a bad wait appends nothing)", tl.size())
	}
}

func TestPolicyMustNameTheLogKey(t *testing.T) {
	_, otherKey, _ := checkpoint.GenerateLogKey("test.example/log")
	_, otherOrigin, _ := checkpoint.GenerateLogKey("other.example/log")
	for _, tc := range []struct{ vkey, want string }{
		{otherKey, "no log line of the policy has this log's key"},
		{otherOrigin, "the policy is for origin \"other.example/log\""},
	} {
		text := "log " + tc.vkey + "\nquorum none\n"
		p, err := checkpoint.ParsePolicy([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		keys, _, _ := LoadKeys(dir, nil, "test.example/log")
		_, err = New(context.Background(), Config{Dir: dir, Keys: keys, Policy: p, PolicyText: []byte(text)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with a policy naming %s: %v, want an error saying %q", tc.vkey, err, tc.want)
		}
	}
}

// TestWitnessGroupIsThePolicys checks that the Tessera group built from a
// policy is satisfied by exactly the sets of cosigners that the policy's own
// check accepts, for nested groups and every subset of witnesses.
func TestWitnessGroupIsThePolicys(t *testing.T) {
	skey, vkey, _ := checkpoint.GenerateLogKey("test.example/log")
	logSigner, _ := checkpoint.NewLogSigner(skey)
	var b strings.Builder
	b.WriteString("log " + vkey + "\n")
	var signers []note.Signer
	for i := range 5 {
		ws, wv, _ := checkpoint.GenerateWitnessKey(fmt.Sprintf("w%d.example", i))
		s, _ := checkpoint.NewWitnessSigner(ws)
		signers = append(signers, s)
		fmt.Fprintf(&b, "witness w%d %s http://127.0.0.1:%d\n", i, wv, 9000+i)
	}
	b.WriteString("group eu 2 w0 w1 w2\ngroup us any w3 w4\ngroup both all eu us\nquorum both\n")
	p, err := checkpoint.ParsePolicy([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	g, names, err := witnessGroup(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 5 {
		t.Fatalf("names = %v, want the 5 witnesses", names)
	}
	if names["http://127.0.0.1:9003/add-checkpoint"] != "w3" {
		t.Fatalf("names = %v: w3's add-checkpoint URL missing", names)
	}
	c := checkpoint.Checkpoint{Origin: "test.example/log", Size: 1, Hash: make([]byte, 32)}
	for mask := 0; mask < 1<<5; mask++ {
		ss := []note.Signer{logSigner}
		set := map[string]bool{}
		for i := range 5 {
			if mask&(1<<i) != 0 {
				ss = append(ss, signers[i])
				set[fmt.Sprintf("w%d", i)] = true
			}
		}
		signed, err := checkpoint.Sign(c, ss...)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := g.Satisfied(signed), p.Satisfied(set); got != want {
			t.Errorf("cosigners %v: Tessera group satisfied = %v, policy = %v", set, got, want)
		}
	}
}

// TestWaitWitnessedTimesOut runs a fail-open log whose only witness is
// down: Tessera publishes checkpoints without the quorum, and the log must
// neither hand out receipts for them nor lose the event.
func TestWaitWitnessedTimesOut(t *testing.T) {
	_, wvkey, _ := checkpoint.GenerateWitnessKey("down.example")
	tl := newTestLog(t, func(c *Config) {
		vkey := c.Keys.VKeys[0]
		text := fmt.Sprintf("log %s\nwitness down %s http://127.0.0.1:1\nquorum down\n", vkey, wvkey)
		p, err := checkpoint.ParsePolicy([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy, c.PolicyText = p, []byte(text)
		c.FailOpen = true
		c.WitnessTimeout = 200 * time.Millisecond
		c.WitnessWaitTimeout = 500 * time.Millisecond
	})
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"a":1}`))
	var a witnessedAnswer
	if r.status != http.StatusGatewayTimeout || json.Unmarshal(r.body, &a) != nil || a.Index != 0 ||
		!strings.Contains(a.Error, "the events are logged (index 0)") || !strings.Contains(a.Error, "GET /v1/receipt/") {
		t.Fatalf("wait with the witness down: %d %s", r.status, r.body)
	}
	if tl.size() != 1 {
		t.Fatalf("log has %d entries, want 1", tl.size())
	}
	if r := tl.get("/v1/receipt/0"); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("GET /v1/receipt/0 without a witnessed checkpoint: %d %s", r.status, r.body)
	}
	m := string(tl.get("/metrics").body)
	for _, want := range []string{
		`tidemark_log_witness_requests_total{outcome="error",witness="down"}`,
		`tidemark_log_witness_quorum_failures_total`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, `tidemark_log_witness_requests_total{outcome="error",witness="down"} 0`) {
		t.Errorf("no failed request to the witness counted")
	}
}
