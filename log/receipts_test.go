package log

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
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

// proofNodes builds the same inclusion proofs as Tessera's ProofBuilder,
// at tree sizes on and around tile boundaries, for indexes across the tree,
// and each verifies against the tree's root; asked again, it answers the
// same from what it kept.
func TestProofNodesMatchTesserasProofBuilder(t *testing.T) {
	tl := newTestLog(t, nil)
	ctx := t.Context()
	sizes := []uint64{1, 2, 3, 255, 256, 257, 511, 512, 513, 845}
	for _, size := range sizes {
		var body strings.Builder
		for i := tl.size(); i < size; i++ {
			fmt.Fprintf(&body, "{\"n\":%d}\n", i)
		}
		if r := tl.post("/v1/events", "application/x-ndjson", []byte(body.String())); r.status != 200 {
			t.Fatalf("append to size %d: %d %s", size, r.status, r.body)
		}
		if got := tl.size(); got != size {
			t.Fatalf("tree size %d, want %d", got, size)
		}
	}
	leaves := tl.leaves()
	for _, size := range sizes {
		pb, err := client.NewProofBuilder(ctx, size, tl.s.readTile)
		if err != nil {
			t.Fatal(err)
		}
		pn := &proofNodes{size: size, read: tl.s.readTile}
		var root []byte
		for i := uint64(0); i < size; i++ {
			if size > 300 && i%7 != 0 && i+3 < size {
				continue
			}
			want, err := pb.InclusionProof(ctx, i)
			if err != nil {
				t.Fatalf("size %d index %d: Tessera: %v", size, i, err)
			}
			for range 2 {
				got, err := pn.inclusion(ctx, i)
				if err != nil {
					t.Fatalf("size %d index %d: %v", size, i, err)
				}
				if !slices.EqualFunc(got, want, bytes.Equal) {
					t.Fatalf("size %d index %d: proof %x, Tessera's %x", size, i, got, want)
				}
			}
			r, err := proof.RootFromInclusionProof(rfc6962.DefaultHasher, i, size, rfc6962.DefaultHasher.HashLeaf(leaves[i]), want)
			if err != nil {
				t.Fatal(err)
			}
			if root != nil && !bytes.Equal(r, root) {
				t.Fatalf("size %d index %d: the proof leads to root %x, others to %x", size, i, r, root)
			}
			root = r
		}
	}
}

// memTree is a Merkle tree of size leaves held in memory, served as
// tlog-tiles hash tiles.
type memTree struct {
	levels [][][]byte // levels[l]: the hashes of the perfect subtrees at level l
}

func newMemTree(size uint64) *memTree {
	h := rfc6962.DefaultHasher
	level := make([][]byte, size)
	for i := range level {
		level[i] = h.HashLeaf([]byte(fmt.Sprintf("leaf %d", i)))
	}
	m := &memTree{levels: [][][]byte{level}}
	for len(level) > 1 {
		up := make([][]byte, len(level)/2)
		for i := range up {
			up[i] = h.HashChildren(level[2*i], level[2*i+1])
		}
		m.levels = append(m.levels, up)
		level = up
	}
	return m
}

// readTile serves the tile at (level, index) of width p (0: full).
func (m *memTree) readTile(_ context.Context, level, index uint64, p uint8) ([]byte, error) {
	l := int(level * layout.TileHeight)
	if l >= len(m.levels) {
		return nil, fmt.Errorf("no tile level %d", level)
	}
	w := uint64(layout.TileWidth)
	if p > 0 {
		w = uint64(p)
	}
	first := index * layout.TileWidth
	if first+w > uint64(len(m.levels[l])) {
		return nil, fmt.Errorf("tile %d/%d.p/%d is beyond the tree", level, index, p)
	}
	return api.HashTile{Nodes: m.levels[l][first : first+w]}.MarshalText()
}

// proofNodes and Tessera's ProofBuilder agree on trees with two and
// three levels of tiles.
func TestProofNodesOnLargerTrees(t *testing.T) {
	ctx := t.Context()
	for _, size := range []uint64{65535, 65536, 65537, 70_000} {
		m := newMemTree(size)
		pb, err := client.NewProofBuilder(ctx, size, m.readTile)
		if err != nil {
			t.Fatal(err)
		}
		pn := &proofNodes{size: size, read: m.readTile}
		for i := uint64(0); i < size; i += 997 {
			for _, i := range []uint64{i, size - 1 - i} {
				want, err := pb.InclusionProof(ctx, i)
				if err != nil {
					t.Fatal(err)
				}
				got, err := pn.inclusion(ctx, i)
				if err != nil {
					t.Fatalf("size %d index %d: %v", size, i, err)
				}
				if !slices.EqualFunc(got, want, bytes.Equal) {
					t.Fatalf("size %d index %d: proof %x, Tessera's %x", size, i, got, want)
				}
			}
		}
	}
}

// An insider's attack on the public GET /v1/receipt: asking for the
// receipts of indexes spread over the whole tree, one per level-0 tile, so
// that every proof reads tiles no other proof shares. What proofNodes keeps
// stays within its bounds (plus the one proof that crosses them), and every
// proof is still right.
func TestProofNodesBoundedUnderSpreadRequests(t *testing.T) {
	ctx := t.Context()
	const size = 300 * layout.TileWidth // 300 level-0 tiles: past maxProofTiles
	m := newMemTree(size)
	pb, err := client.NewProofBuilder(ctx, size, m.readTile)
	if err != nil {
		t.Fatal(err)
	}
	pn := &proofNodes{size: size, read: m.readTile}
	maxTiles, maxNodes := 0, 0
	for i := uint64(0); i < size; i += layout.TileWidth {
		got, err := pn.inclusion(ctx, i)
		if err != nil {
			t.Fatalf("index %d: %v", i, err)
		}
		want, err := pb.InclusionProof(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("index %d: proof %x, Tessera's %x", i, got, want)
		}
		maxTiles, maxNodes = max(maxTiles, len(pn.tiles)), max(maxNodes, len(pn.nodes))
	}
	// One proof reads at most one tile per tile level, and computes (and
	// keeps) at most the inner nodes of one tile per level, under 2*256.
	levels := 3
	if maxTiles > maxProofTiles+1+levels {
		t.Errorf("proofNodes kept %d tiles, bound %d", maxTiles, maxProofTiles)
	}
	if maxNodes > maxProofNodes+levels*2*layout.TileWidth {
		t.Errorf("proofNodes kept %d nodes, bound %d", maxNodes, maxProofNodes)
	}
	if maxTiles <= maxProofTiles/2 {
		t.Errorf("the attack kept only %d tiles: it does not reach the bound it tests", maxTiles)
	}
}

// The receipts of a burst of 1,000 requests against one checkpoint of a
// tree of 40,000: Tessera's ProofBuilder (one per checkpoint, as the log
// had it) against proofNodes.
func BenchmarkInclusionProofs(b *testing.B) {
	const size, burst = 40_000, 1000
	m := newMemTree(size)
	ctx := context.Background()
	b.Run("tessera", func(b *testing.B) {
		for b.Loop() {
			pb, _ := client.NewProofBuilder(ctx, size, m.readTile)
			for i := uint64(size - burst); i < size; i++ {
				if _, err := pb.InclusionProof(ctx, i); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("proofNodes", func(b *testing.B) {
		for b.Loop() {
			pn := &proofNodes{size: size, read: m.readTile}
			for i := uint64(size - burst); i < size; i++ {
				if _, err := pn.inclusion(ctx, i); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
