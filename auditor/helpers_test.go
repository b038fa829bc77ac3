package auditor

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// testKeys are a log key and witness keys, and the policy naming them.
type testKeys struct {
	t         *testing.T
	origin    string
	logVKey   string
	logSigner note.Signer
	witnesses []testWitness
}

type testWitness struct {
	name   string
	vkey   string
	signer note.Signer
	seed   []byte // the Ed25519 seed, to cosign at chosen times
	srv    *httptest.Server
	served []byte // what GET /<hash>/checkpoint answers; nil: 404
}

func newTestKeys(t *testing.T, nWitnesses int) *testKeys {
	t.Helper()
	k := &testKeys{t: t, origin: "audit.test/log"}
	skey, vkey, err := checkpoint.GenerateLogKey(k.origin)
	if err != nil {
		t.Fatal(err)
	}
	k.logVKey = vkey
	if k.logSigner, err = checkpoint.NewLogSigner(skey); err != nil {
		t.Fatal(err)
	}
	for i := range nWitnesses {
		name := fmt.Sprintf("w%d", i+1)
		skey, vkey, err := checkpoint.GenerateWitnessKey("witness.test/" + name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := checkpoint.NewWitnessSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
		if err != nil || len(raw) != 33 {
			t.Fatalf("witness key %q", skey)
		}
		k.witnesses = append(k.witnesses, testWitness{name: name, vkey: vkey, signer: s, seed: raw[1:]})
	}
	for i := range k.witnesses {
		w := &k.witnesses[i]
		w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/"+originHash(k.origin)+"/checkpoint" || w.served == nil {
				http.NotFound(rw, r)
				return
			}
			_, _ = rw.Write(w.served)
		}))
		t.Cleanup(w.srv.Close)
	}
	return k
}

// policy returns the policy text for a log at logURL with quorum "group g
// K all-witnesses".
func (k *testKeys) policy(logURL string, quorum int) *checkpoint.Policy {
	k.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "log %s %s\n", k.logVKey, logURL)
	var names []string
	for _, w := range k.witnesses {
		fmt.Fprintf(&b, "witness %s %s %s\n", w.name, w.vkey, w.srv.URL)
		names = append(names, w.name)
	}
	if quorum == 0 {
		b.WriteString("quorum none\n")
	} else {
		fmt.Fprintf(&b, "group g %d %s\nquorum g\n", quorum, strings.Join(names, " "))
	}
	p, err := checkpoint.ParsePolicy([]byte(b.String()))
	if err != nil {
		k.t.Fatalf("policy: %v\n%s", err, b.String())
	}
	return p
}

// testLog is a tlog-tiles log written by hand into a directory and served
// by a static file server: what a log operator can serve, honest or not.
type testLog struct {
	t      *testing.T
	keys   *testKeys
	dir    string
	leaves [][]byte
	srv    *httptest.Server
	// handler wraps the file server, for tests that protect or break it.
	wrap func(http.Handler) http.Handler
}

func newTestLog(t *testing.T, keys *testKeys, leaves [][]byte) *testLog {
	t.Helper()
	l := &testLog{t: t, keys: keys, dir: t.TempDir()}
	files := http.FileServer(http.Dir(l.dir))
	l.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var h http.Handler = files
		if l.wrap != nil {
			h = l.wrap(files)
		}
		h.ServeHTTP(rw, r)
	}))
	t.Cleanup(l.srv.Close)
	l.append(leaves...)
	return l
}

// eventLeaves returns n canonical event leaves.
func eventLeaves(t *testing.T, tag string, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	base := time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)
	for i := range out {
		ev := fmt.Sprintf(`{"id":"%s-%d","action":"secret.read","resource":"prod/db/%d","actor":{"name":"alice"},"n":%d}`, tag, i, i%7, i)
		if i%3 == 1 {
			ev = fmt.Sprintf(`{"id":"%s-%d","action":"deploy.create","resource":"staging/api","n":%d}`, tag, i, i)
		}
		leaf, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(ev), base.Add(time.Duration(i)*time.Millisecond), "deploy-bot", "")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = leaf
	}
	return out
}

// append adds leaves and rewrites every tile and bundle.
func (l *testLog) append(leaves ...[]byte) {
	l.leaves = append(l.leaves, leaves...)
	l.writeTree(l.leaves)
}

// writeTree writes the entry bundles and hash tiles of a tree of leaves,
// full and partial as tlog-tiles lays them out for its size.
func (l *testLog) writeTree(leaves [][]byte) {
	l.t.Helper()
	n := uint64(len(leaves))
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
		l.write(layout.EntriesPath(i, layout.PartialTileSize(0, i, n)), b)
	}
	for level, nodes := range levels {
		tl := uint64(level / 8)
		for i := uint64(0); i*256 < uint64(len(nodes)); i++ {
			var b []byte
			for _, h := range nodes[i*256 : min(uint64(len(nodes)), (i+1)*256)] {
				b = append(b, h...)
			}
			l.write(layout.TilePath(tl, i, layout.PartialTileSize(tl, i, n)), b)
		}
	}
}

func (l *testLog) write(path string, b []byte) {
	l.t.Helper()
	p := filepath.Join(l.dir, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// root returns the root hash of the first size leaves.
func (l *testLog) root(size uint64) []byte {
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	for _, leaf := range l.leaves[:size] {
		_ = rng.Append(rfc6962.DefaultHasher.HashLeaf(leaf), nil)
	}
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	h, _ := rng.GetRootHash(nil)
	return h
}

// signed returns the checkpoint of the first size leaves signed by the log
// and cosigned, at time at, by the witnesses numbered in cosigners (from 0).
func (l *testLog) signed(size uint64, at time.Time, cosigners ...int) []byte {
	l.t.Helper()
	b, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: l.keys.origin, Size: size, Hash: l.root(size)}, l.keys.logSigner)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, i := range cosigners {
		b = cosign(l.t, b, l.keys.witnesses[i], at)
	}
	return b
}

// publish makes signed the log's checkpoint.
func (l *testLog) publish(signed []byte) { l.write(layout.CheckpointPath, signed) }

// cosign adds a cosignature/v1 line dated at to a signed checkpoint.
func cosign(t *testing.T, signed []byte, w testWitness, at time.Time) []byte {
	t.Helper()
	msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", at.Unix(), noteText(signed))
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(w.seed), []byte(msg))
	line := make([]byte, 0, 76)
	line = binary.BigEndian.AppendUint32(line, w.signer.KeyHash())
	line = binary.BigEndian.AppendUint64(line, uint64(at.Unix()))
	line = append(line, sig...)
	return append(signed, []byte("— "+w.signer.Name()+" "+b64(line)+"\n")...)
}

// newTestAuditor returns an Auditor over l with policy p and the findings
// it reports.
func newTestAuditor(t *testing.T, p *checkpoint.Policy, mod func(*Config)) *Auditor {
	t.Helper()
	cfg := Config{Policy: p, Workers: 4}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func check(t *testing.T, a *Auditor) *Report {
	t.Helper()
	r, err := a.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func full(t *testing.T, a *Auditor) *Report {
	t.Helper()
	r, err := a.Full(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// kinds returns the kinds of r's findings, leaving out witness notes.
func kinds(r *Report) []Kind {
	var ks []Kind
	for _, f := range r.Findings {
		if f.Kind != KindWitness {
			ks = append(ks, f.Kind)
		}
	}
	return ks
}

func has(r *Report, k Kind) *Finding {
	for i := range r.Findings {
		if r.Findings[i].Kind == k {
			return &r.Findings[i]
		}
	}
	return nil
}

func wantExit(t *testing.T, r *Report, code int) {
	t.Helper()
	if got := r.ExitCode(); got != code {
		var msgs []string
		for _, f := range r.Findings {
			msgs = append(msgs, string(f.Kind)+": "+f.Message)
		}
		t.Fatalf("exit code %d, want %d; findings:\n%s", got, code, strings.Join(msgs, "\n"))
	}
}

// recheck runs CheckEvidence on the evidence file of finding f.
func recheck(t *testing.T, p *checkpoint.Policy, f *Finding) (int, string) {
	t.Helper()
	if f == nil || f.Evidence == "" {
		t.Fatalf("no evidence file in %+v", f)
	}
	b, err := os.ReadFile(f.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	return CheckEvidence(p, b)
}
