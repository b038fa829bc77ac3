package report

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/auditor"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// staticLog serves a tlog-tiles log written by hand, with the payloads of
// its commitment leaves at /v1/payloads as a commitment-mode log does.
type staticLog struct {
	dir      string
	srv      *httptest.Server
	openings map[uint64]checkpoint.Opening
}

func newStaticLog(t testing.TB, leaves [][]byte, openings map[uint64]checkpoint.Opening) (*staticLog, []byte) {
	t.Helper()
	l := &staticLog{dir: t.TempDir(), openings: openings}
	n := uint64(len(leaves))
	write := func(path string, b []byte) {
		p := filepath.Join(l.dir, filepath.FromSlash(path))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	levels := map[uint][][]byte{}
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	for _, leaf := range leaves {
		_ = rng.Append(rfc6962.DefaultHasher.HashLeaf(leaf), func(id compact.NodeID, h []byte) {
			if id.Level%8 == 0 {
				levels[id.Level] = append(levels[id.Level], h)
			}
		})
	}
	for i := uint64(0); i*256 < n; i++ {
		var b []byte
		for _, leaf := range leaves[i*256 : min(n, (i+1)*256)] {
			b = binary.BigEndian.AppendUint16(b, uint16(len(leaf)))
			b = append(b, leaf...)
		}
		write(layout.EntriesPath(i, layout.PartialTileSize(0, i, n)), b)
	}
	for level, nodes := range levels {
		tl := uint64(level / 8)
		for i := uint64(0); i*256 < uint64(len(nodes)); i++ {
			var b []byte
			for _, h := range nodes[i*256 : min(uint64(len(nodes)), (i+1)*256)] {
				b = append(b, h...)
			}
			write(layout.TilePath(tl, i, layout.PartialTileSize(tl, i, n)), b)
		}
	}
	root, _ := rng.GetRootHash(nil)
	files := http.FileServer(http.Dir(l.dir))
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/payloads" {
			files.ServeHTTP(w, r)
			return
		}
		from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		to, _ := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
		for i := from; i < to && i < n; i++ {
			if checkpoint.KindOf(leaves[i]) != checkpoint.KindCommitment {
				continue
			}
			if o, ok := l.openings[i]; ok {
				b, _ := json.Marshal(map[string]any{"index": i, "opening": o})
				fmt.Fprintf(w, "%s\n", b)
			} else {
				fmt.Fprintf(w, `{"index":%d,"erased":true}`+"\n", i)
			}
		}
	}))
	t.Cleanup(l.srv.Close)
	return l, root
}

// TestRunCommitmentLog runs the whole report, the auditor's full check
// included, on a commitment-mode log with erasures (the hand-built log of
// TestCollectorHandBuiltLeaves, without its bad leaves) cosigned by two
// witnesses; then on the same log serving an event that does not open its
// commitment.
func TestRunCommitmentLog(t *testing.T) {
	all, openings := handBuiltLog(t)
	leaves := all[:18]
	l, root := newStaticLog(t, leaves, openings)

	lskey, lvkey, _ := checkpoint.GenerateLogKey("example.com/log")
	logSigner, _ := checkpoint.NewLogSigner(lskey)
	policy := fmt.Sprintf("log %s %s\n", lvkey, l.srv.URL)
	signers := []note.Signer{logSigner}
	for _, name := range []string{"w1", "w2", "w3"} {
		skey, vkey, _ := checkpoint.GenerateWitnessKey("example.com/" + name)
		policy += fmt.Sprintf("witness %s %s\n", name, vkey)
		if name != "w3" {
			s, _ := checkpoint.NewWitnessSigner(skey)
			signers = append(signers, s)
		}
	}
	policy += "group g 2 w1 w2 w3\nquorum g\n"
	p, err := checkpoint.ParsePolicy([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "example.com/log", Size: uint64(len(leaves)), Hash: root}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(l.dir, "checkpoint"), signed, 0o644)

	run := func() *Report {
		t.Helper()
		r, err := Run(context.Background(), Options{
			Auditor: auditor.Config{Policy: p, Workers: 2, EvidenceDir: t.TempDir()}, PolicyText: []byte(policy),
			From: at(10), To: at(20), Version: "test",
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := run()
	v := r.Verification
	if !v.Verified || v.Result != "verified" || v.Leaves != 18 || v.EventLeaves != 9 || v.CommitmentLeaves != 5 || v.ErasureLeaves != 3 ||
		v.RawLeaves != 1 || v.BadLeaves != 0 || v.Opened != 2 || v.Erased != 3 {
		t.Fatalf("verification %+v", v)
	}
	if c := r.Checkpoint; c == nil || c.Size != 18 || c.Note != string(signed) || len(c.Cosigners) != 2 || c.Cosigners[0].Name != "w1" || c.Cosigners[1].Name != "w2" ||
		c.QuorumTime == nil || len(c.Witnesses) != 3 || c.Witnesses[2].Cosigned {
		t.Errorf("checkpoint %+v", r.Checkpoint)
	}
	if r.Log.VKey != lvkey || r.Log.URL != l.srv.URL || r.Log.Policy != policy {
		t.Errorf("log %+v", r.Log)
	}
	e := r.Entries
	if e.Entries != 9 || e.Events != 3 || e.Commitments != 5 || e.Opened != 2 || e.Erasures != 1 || e.Unparsed != 0 ||
		fmt.Sprint(e.BySource) != "map[a:3 admin:1 b:5]" || fmt.Sprint(e.EventsBySource) != "map[a:3 b:2]" || fmt.Sprint(e.ByAction) != "map[x:3 y:1 z:1]" {
		t.Errorf("period %+v", e)
	}
	er := r.Erasures
	if len(er.InPeriod) != 1 || er.InPeriod[0].Index != 13 || len(er.Covering) != 2 || er.Covering[1].Index != 16 || er.ErasedInPeriod != 3 {
		t.Errorf("erasures %+v", er)
	}
	var html bytes.Buffer
	r.WriteHTML(&html)
	if !strings.Contains(html.String(), "<strong>Verified.</strong>") || !strings.Contains(html.String(), "2 served and opening their commitment, 3 erased by a logged erasure") {
		t.Errorf("HTML:\n%s", html.String())
	}

	// The log serves, for entry 7, an event that is not the one committed.
	bad := openings[7]
	bad.Leaf = eventLeaf(t, 13, "b", "not z")
	l.openings = map[uint64]checkpoint.Opening{7: bad, 9: openings[9]}
	r = run()
	if v := r.Verification; v.Verified || v.Result != "misbehaviour" || v.ExitCode != 1 || len(v.Findings) == 0 {
		t.Fatalf("a payload that does not open its commitment: %+v", v)
	}
	if r.Entries.ByAction["not z"] != 0 || r.Entries.Opened != 1 {
		t.Errorf("the false event was counted: %+v", r.Entries)
	}
	if !strings.Contains(r.Notes[0], "did NOT succeed (misbehaviour)") {
		t.Errorf("notes %q", r.Notes)
	}
}
