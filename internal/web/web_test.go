package web

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8"},
		{"HEAD", "/", 200, "text/html; charset=utf-8"},
		{"GET", "/ui/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/ui/verify.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/ui/style.css", 200, "text/css; charset=utf-8"},
		{"GET", "/ui/", 404, ""},
		{"GET", "/ui/nothing.js", 404, ""},
		{"GET", "/ui/../index.html", 404, ""},
		{"GET", "/ui/ui/app.js", 404, ""},
		{"GET", "/ui/.hidden", 404, ""},
		{"GET", "/index.html", 404, ""},
		{"POST", "/", 405, ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			continue
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q", tc.method, tc.path, got)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("%s %s: Content-Security-Policy %q", tc.method, tc.path, got)
		}
		if tc.status != 200 {
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("%s %s: Content-Type %q, want %q", tc.method, tc.path, got, tc.ctype)
		}
		if tc.method == "GET" && len(body) == 0 {
			t.Errorf("%s %s: empty body", tc.method, tc.path)
		}
	}
	if !strings.Contains(ContentSecurityPolicy, "script-src 'self';") || strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("the CSP must allow scripts from the page's origin only: %s", ContentSecurityPolicy)
	}
}

// TestStaticFilesAreSafe checks the rules the page keeps by hand: no inline
// script or event handler attribute, nothing loaded from elsewhere, and no
// API that parses hostile text as markup.
func TestStaticFilesAreSafe(t *testing.T) {
	html, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAll(html, -1) {
		if !regexp.MustCompile(`\ssrc="ui/[a-z]+\.js"`).Match(m) {
			t.Errorf("index.html: %s is not a script from ui/", m)
		}
	}
	if m := regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`).Find(html); m != nil {
		t.Errorf("index.html: event handler attribute in %s", m)
	}
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).Find(html); m != nil {
		t.Errorf("index.html loads or links something from elsewhere: %s", m)
	}
	for _, f := range []string{"static/ui/app.js", "static/ui/verify.js"} {
		b, err := static.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function`).Find(b); m != nil {
			t.Errorf("%s uses %s: write text with textContent", f, m)
		}
	}
}

// node returns the path of node, or skips the test (fails it with
// CI=true).
func node(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, and there is no node to run the JavaScript tests: %v", err)
		}
		t.Skipf("no node to run the JavaScript tests: %v", err)
	}
	return p
}

// vectors is what the Go code says, for verify.js to agree with: see
// test/verify_test.mjs.
type vectors struct {
	Policy      string          `json:"policy"`
	Policies    []policyVector  `json:"policies"`
	Checkpoints []signedVector  `json:"checkpoints"`
	Inclusions  []inclusionCase `json:"inclusions"`
	Paths       []pathVector    `json:"paths"`
	Leaves      []leafVector    `json:"leaves"`
	Openings    []openingVector `json:"openings"`
	TileDir     string          `json:"tile_dir"`
}

type policyVector struct {
	Name  string `json:"name"`
	Text  string `json:"text"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

type signedVector struct {
	Name       string           `json:"name"`
	Text       string           `json:"text"`
	Verdict    string           `json:"verdict"` // ok, malformed, unverified, quorum
	Error      string           `json:"error,omitempty"`
	Cosigners  map[string]int64 `json:"cosigners,omitempty"`
	CosignedBy int64            `json:"cosigned_by,omitempty"`
}

type inclusionCase struct {
	Name       string `json:"name"`
	Checkpoint string `json:"checkpoint"`
	Index      int    `json:"index"`
	OK         bool   `json:"ok"`
	FailStep   string `json:"fail_step,omitempty"`
	FlipPath   string `json:"flip_path,omitempty"` // a file under tile_dir to serve with one byte flipped
	FlipOffset int    `json:"flip_offset"`
}

// leafVector is an entry and whether checkpoint.ParseLeaf takes it for an
// event leaf: verify.js's parseLeaf must say the same.
type leafVector struct {
	Name  string `json:"name"`
	B64   []byte `json:"b64"`
	Event bool   `json:"event"`
	// Kind is what the Go code takes the entry for: event (ParseLeaf),
	// commitment (ParseCommitmentLeaf), erasure (ParseErasureLeaf) or
	// raw; for the last two, the values it read.
	Kind       string      `json:"kind"`
	Commitment string      `json:"commitment,omitempty"`
	Received   string      `json:"received,omitempty"`
	Source     string      `json:"source,omitempty"`
	Entries    [][2]uint64 `json:"entries,omitempty"`
	Reason     string      `json:"reason,omitempty"`
}

// goKind says what the Go code takes b for, and fills in the values it
// read from a commitment or erasure leaf.
func goKind(v *leafVector, b []byte) {
	v.Kind = "raw"
	if _, err := checkpoint.ParseLeaf(b); err == nil {
		v.Kind, v.Event = "event", true
		return
	}
	if c, err := checkpoint.ParseCommitmentLeaf(b); err == nil {
		v.Kind, v.Commitment, v.Received, v.Source = "commitment", hex.EncodeToString(c.Commitment[:]), c.Received.Format(checkpoint.ReceivedFormat), c.Source
		return
	}
	if e, err := checkpoint.ParseErasureLeaf(b); err == nil {
		v.Kind, v.Received, v.Source, v.Reason = "erasure", e.Received.Format(checkpoint.ReceivedFormat), e.Source, e.Reason
		for _, r := range e.Entries {
			v.Entries = append(v.Entries, [2]uint64{r.From, r.To})
		}
	}
}

// openingVector is a commitment leaf, an opening and whether checkpoint's
// Opening.Verify accepts it: verify.js's verifyOpening must say the same.
type openingVector struct {
	Name       string `json:"name"`
	Commitment []byte `json:"commitment"` // the commitment leaf's bytes
	Salt       []byte `json:"salt"`
	Leaf       []byte `json:"leaf"`
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
}

// openingVectors are openings right and wrong.
func openingVectors(t *testing.T) []openingVector {
	t.Helper()
	at := time.Date(2026, 11, 24, 9, 0, 0, 1, time.UTC)
	eventLeaf := func(event, source string, at time.Time) []byte {
		b, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(event), at, source, "")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	salt := bytes.Repeat([]byte{7}, checkpoint.SaltSize)
	leaf := eventLeaf(`{"actor":"alice","action":"secret.read"}`, "kube-apiserver", at)
	commit := func(salt, leaf []byte, source string, at time.Time) []byte {
		return checkpoint.AppendCommitmentLeaf(nil, checkpoint.CommitmentLeaf{Received: at, Source: source, Commitment: checkpoint.Commit(salt, leaf)})
	}
	c := commit(salt, leaf, "kube-apiserver", at)
	changed := bytes.Replace(leaf, []byte("alice"), []byte("mallory"), 1)
	nonCanonical := bytes.Replace(leaf, []byte(`{"action"`), []byte(`{ "action"`), 1)
	otherSource := eventLeaf(`{"actor":"alice"}`, "someone-else", at)
	later := eventLeaf(`{"actor":"alice"}`, "kube-apiserver", at.Add(time.Second))
	cases := []struct {
		name             string
		commitment, s, l []byte
	}{
		{"the opening", c, salt, leaf},
		{"the event changed", c, salt, changed},
		{"another salt", c, bytes.Repeat([]byte{8}, checkpoint.SaltSize), leaf},
		{"a short salt", commit(salt[:31], leaf, "kube-apiserver", at), salt[:31], leaf},
		{"an event leaf not canonical, committed to", commit(salt, nonCanonical, "kube-apiserver", at), salt, nonCanonical},
		{"another source, committed to", commit(salt, otherSource, "kube-apiserver", at), salt, otherSource},
		{"another time, committed to", commit(salt, later, "kube-apiserver", at), salt, later},
		{"a raw entry, committed to", commit(salt, []byte("raw"), "kube-apiserver", at), salt, []byte("raw")},
	}
	var out []openingVector
	for _, tc := range cases {
		cl, err := checkpoint.ParseCommitmentLeaf(tc.commitment)
		if err != nil {
			t.Fatalf("opening vector %s: %v", tc.name, err)
		}
		_, err = checkpoint.Opening{Salt: tc.s, Leaf: tc.l}.Verify(cl)
		ov := openingVector{Name: tc.name, Commitment: tc.commitment, Salt: tc.s, Leaf: tc.l, OK: err == nil}
		if err != nil {
			ov.Error = err.Error()
		}
		out = append(out, ov)
	}
	return out
}

// leafVectors are entries that are event leaves, and entries shaped like
// one that are not (a writer to /add can append any bytes the log does not
// take for a leaf).
func leafVectors(t *testing.T) []leafVector {
	t.Helper()
	at := time.Date(2026, 11, 24, 9, 0, 0, 1, time.UTC)
	leaf := func(event string, key string) string {
		b, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(event), at, "kube-apiserver", key)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const tail = `,"received":"2026-11-24T09:00:00.000000001Z","source":"kube-apiserver","v":1}`
	nest := func(d int) string { // d nested arrays around "x"
		return strings.Repeat("[", d) + `"x"` + strings.Repeat("]", d)
	}
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	cases := []struct{ name, text string }{
		{"canonical", leaf(`{"actor":"alice","action":"secret.read","n":[1.5,-0,1e21,true,null],"z":{"é":"\u2028\u00e9😀"}}`, "")},
		{"canonical with an idempotency key", leaf(`{"actor":"alice"}`, "k-1")},
		{"canonical with escapes", leaf(`{"a":"\"\\\b\f\n\r\t\u0001\u001f\u007f"}`, "")},
		{"nested 62", `{"event":{"a":` + nest(62) + `}` + tail},
		{"nested 63", `{"event":{"a":` + nest(63) + `}` + tail},
		{"nested 64", `{"event":{"a":` + nest(64) + `}` + tail},
		{"nested past encoding/json", `{"event":{"actor":"alice","a":` + deep + `}` + tail},
		{"an extra member nested past encoding/json", `{"event":{"actor":"alice"}` + strings.TrimSuffix(tail, "}") + `,"x":` + deep + `}`},
		{"an extra member", `{"event":{"actor":"alice"}` + strings.TrimSuffix(tail, "}") + `,"x":1}`},
		{"white space", `{"event": {"actor":"alice"}` + tail},
		{"members out of order", `{"source":"kube-apiserver","event":{"actor":"alice"},"received":"2026-11-24T09:00:00.000000001Z","v":1}`},
		{"event members out of order", `{"event":{"b":1,"a":2}` + tail},
		{"duplicate event member", `{"event":{"actor":"alice","actor":"bob"}` + tail},
		{"duplicate source", `{"event":{"actor":"alice"},"received":"2026-11-24T09:00:00.000000001Z","source":"kube-apiserver","source":"kube-apiserver","v":1}`},
		{"a number not in shortest form", `{"event":{"n":1.50}` + tail},
		{"a number a double cannot hold", `{"event":{"n":9007199254740993}` + tail},
		{"a lone surrogate", `{"event":{"s":"\ud800"}` + tail},
		{"an escape not needed", `{"event":{"s":"\u0061"}` + tail},
		{"received without nanoseconds", `{"event":{}` + strings.Replace(tail, ".000000001Z", "Z", 1)},
		{"received on the 30th of February", `{"event":{}` + strings.Replace(tail, "2026-11-24", "2026-02-30", 1)},
		{"received at second 60", `{"event":{}` + strings.Replace(tail, "09:00:00", "09:00:60", 1)},
		{"version 2", `{"event":{}` + strings.Replace(tail, `"v":1`, `"v":2`, 1)},
		{"no source", `{"event":{},"received":"2026-11-24T09:00:00.000000001Z","v":1}`},
		{"empty idempotency key", `{"event":{},"idempotency_key":""` + tail},
		{"event an array", `{"event":[]` + tail},
		{"trailing newline", leaf(`{"a":1}`, "") + "\n"},
	}
	cases = append(cases, commitmentCases(t, at)...)
	var out []leafVector
	for _, c := range cases {
		if len(c.text) > checkpoint.MaxLeafSize {
			t.Fatalf("leaf vector %s is %d bytes", c.name, len(c.text))
		}
		lv := leafVector{Name: c.name, B64: []byte(c.text)}
		goKind(&lv, []byte(c.text))
		out = append(out, lv)
	}
	return out
}

// commitmentCases are commitment and erasure leaves the log writes, and
// entries shaped like them that are not.
func commitmentCases(t *testing.T, at time.Time) []struct{ name, text string } {
	t.Helper()
	var c [32]byte
	for i := range c {
		c[i] = byte(i * 7)
	}
	commitment := func(source string) string {
		return string(checkpoint.AppendCommitmentLeaf(nil, checkpoint.CommitmentLeaf{Received: at, Source: source, Commitment: c}))
	}
	erasure := func(reason, source string, r ...checkpoint.IndexRange) string {
		b, err := checkpoint.AppendErasureLeaf(nil, checkpoint.Erasure{Received: at, Source: source, Entries: r, Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cm := commitment("kube-apiserver")
	er := erasure("GDPR request 42", "dpo", checkpoint.IndexRange{From: 5, To: 6}, checkpoint.IndexRange{From: 100, To: 200})
	hexC := hex.EncodeToString(c[:])
	const recv = `"received":"2026-11-24T09:00:00.000000001Z"`
	many := make([]checkpoint.IndexRange, checkpoint.MaxErasureRanges)
	for i := range many {
		many[i] = checkpoint.IndexRange{From: uint64(2 * i), To: uint64(2*i + 1)}
	}
	manyText := erasure("r", "retention", many...)
	over := strings.Replace(manyText, `]],"reason"`, `],[5000,5001]],"reason"`, 1)
	largest := erasure("r", "dpo", checkpoint.IndexRange{From: 1<<53 - 2, To: 1<<53 - 1})
	return []struct{ name, text string }{
		{"commitment", cm},
		{"commitment with escapes in its source", commitment("a\"b\\c\u0001\u2028é😀")},
		{"commitment in uppercase hex", strings.Replace(cm, hexC, strings.ToUpper(hexC), 1)},
		{"commitment too short", strings.Replace(cm, hexC, hexC[:62], 1)},
		{"commitment not hex", strings.Replace(cm, hexC, "zz"+hexC[2:], 1)},
		{"commitment version 1", strings.Replace(cm, `"v":2`, `"v":1`, 1)},
		{"commitment version 2.0", strings.Replace(cm, `"v":2`, `"v":2.0`, 1)},
		{"commitment with an extra member", strings.Replace(cm, `,"v":2}`, `,"v":2,"x":1}`, 1)},
		{"commitment with white space", strings.Replace(cm, `,"v":2}`, `, "v":2}`, 1)},
		{"commitment members out of order", `{"received":"2026-11-24T09:00:00.000000001Z","commitment":"` + hexC + `","source":"s","v":2}`},
		{"commitment twice", `{"commitment":"` + hexC + `","commitment":"` + hexC + `",` + recv + `,"source":"s","v":2}`},
		{"commitment without source", `{"commitment":"` + hexC + `",` + recv + `,"v":2}`},
		{"commitment with a source escape not needed", `{"commitment":"` + hexC + `",` + recv + `,"source":"\u0061","v":2}`},
		{"commitment with a lone surrogate in its source", `{"commitment":"` + hexC + `",` + recv + `,"source":"\ud800","v":2}`},
		{"commitment received without nanoseconds", strings.Replace(cm, ".000000001Z", "Z", 1)},
		{"commitment received on the 30th of February", strings.Replace(cm, "2026-11-24", "2026-02-30", 1)},
		{"commitment and event", `{"commitment":"` + hexC + `","event":{},` + recv + `,"source":"s","v":2}`},
		{"commitment not a string", `{"commitment":1,` + recv + `,"source":"s","v":2}`},
		{"commitment with a trailing newline", cm + "\n"},
		{"erasure", er},
		{"erasure of one entry by retention", erasure("retention 720h", "retention", checkpoint.IndexRange{From: 0, To: 1})},
		{"erasure of the largest index", largest},
		{"erasure past 2^53-1", strings.Replace(largest, "9007199254740991]", "9007199254740992]", 1)},
		{"erasure past 2^64", strings.Replace(er, "[5,6]", "[5,18446744073709551616]", 1)},
		{"erasure with escapes in its reason", erasure("a\"b\\c\n\u0001\u2028é😀", "dpo", checkpoint.IndexRange{From: 3, To: 9})},
		{"erasure of the most ranges", manyText},
		{"erasure of too many ranges", over},
		{"erasure reason of 1024 bytes", erasure(strings.Repeat("é", 512), "dpo", checkpoint.IndexRange{From: 3, To: 9})},
		{"erasure reason of 1025 bytes", strings.Replace(erasure(strings.Repeat("é", 512), "dpo", checkpoint.IndexRange{From: 3, To: 9}), `"reason":"`, `"reason":"x`, 1)},
		{"erasure without reason", strings.Replace(er, `"reason":"GDPR request 42"`, `"reason":""`, 1)},
		{"erasure with no range", strings.Replace(er, `[[5,6],[100,200]]`, `[]`, 1)},
		{"erasure of an empty range", strings.Replace(er, `[5,6]`, `[6,6]`, 1)},
		{"erasure of a reversed range", strings.Replace(er, `[5,6]`, `[7,6]`, 1)},
		{"erasure of ranges out of order", strings.Replace(er, `[[5,6],[100,200]]`, `[[100,200],[5,6]]`, 1)},
		{"erasure of touching ranges", strings.Replace(er, `[[5,6],[100,200]]`, `[[5,6],[6,7]]`, 1)},
		{"erasure of overlapping ranges", strings.Replace(er, `[[5,6],[100,200]]`, `[[5,9],[6,7]]`, 1)},
		{"erasure of a range of three", strings.Replace(er, `[5,6]`, `[5,6,7]`, 1)},
		{"erasure with a leading zero", strings.Replace(er, `[5,6]`, `[05,6]`, 1)},
		{"erasure with a fraction", strings.Replace(er, `[5,6]`, `[5.0,6]`, 1)},
		{"erasure with an exponent", strings.Replace(er, `[100,200]`, `[1e2,200]`, 1)},
		{"erasure with a negative index", strings.Replace(er, `[5,6]`, `[-1,6]`, 1)},
		{"erasure with white space", strings.Replace(er, `[5,6]`, `[5, 6]`, 1)},
		{"erasure with an extra member", strings.Replace(er, `,"reason"`, `,"by":"x","reason"`, 1)},
		{"erasure members out of order", strings.Replace(strings.Replace(er, `"entries":[[5,6],[100,200]],`, ``, 1), `"GDPR request 42"`, `"GDPR request 42","entries":[[5,6],[100,200]]`, 1)},
		{"erasure version 1", strings.Replace(er, `"v":2`, `"v":1`, 1)},
		{"erasure not an object", `{"erasure":[],` + recv + `,"source":"s","v":2}`},
		{"erasure reason with a lone surrogate", strings.Replace(er, `"GDPR request 42"`, `"\ud800"`, 1)},
	}
}

type pathVector struct {
	Kind  string `json:"kind"` // tile or entries
	Level uint64 `json:"level"`
	Index uint64 `json:"index"`
	Width uint8  `json:"width"`
	Path  string `json:"path"`
}

type witnessKey struct {
	name, skey, vkey string
	signer           note.Signer
	priv             ed25519.PrivateKey
}

func newWitness(t *testing.T, name string) witnessKey {
	t.Helper()
	skey, vkey, err := checkpoint.GenerateWitnessKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := checkpoint.NewWitnessSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(skey, "+", 5) // PRIVATE, KEY, name, hash, base64(type || seed)
	seed, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil {
		t.Fatal(err)
	}
	return witnessKey{name: name, skey: skey, vkey: vkey, signer: s, priv: ed25519.NewKeyFromSeed(seed[1:])}
}

// cosignLine is w's cosignature/v1 line over body at time ts, made by hand
// (the signer from NewWitnessSigner always uses the current time).
func (w witnessKey) cosignLine(body []byte, ts uint64) string {
	msg := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", ts)), body...)
	sig := ed25519.Sign(w.priv, msg)
	b := binary.BigEndian.AppendUint32(nil, w.signer.KeyHash())
	b = binary.BigEndian.AppendUint64(b, ts)
	b = append(b, sig...)
	return "— " + w.signer.Name() + " " + base64.StdEncoding.EncodeToString(b) + "\n"
}

// tree is a Merkle tree of entries, with every node hash by level.
type tree struct {
	entries [][]byte
	levels  [][][]byte // levels[l][i]: the node at level l, index i
}

func newTree(n int) *tree {
	tr := &tree{}
	var leaves [][]byte
	for i := 0; i < n; i++ {
		var e []byte
		if i%3 == 0 {
			e = []byte(fmt.Sprintf(`{"event":{"actor":"user-%d","action":"secret.read"},"received":"2026-01-01T00:00:00.000000000Z","source":"test","v":1}`, i))
		} else {
			e = []byte(fmt.Sprintf("raw entry %d", i))
		}
		tr.entries = append(tr.entries, e)
		leaves = append(leaves, rfc6962.DefaultHasher.HashLeaf(e))
	}
	tr.levels = append(tr.levels, leaves)
	for l := 0; len(tr.levels[l]) > 1; l++ {
		var next [][]byte
		for i := 0; i+1 < len(tr.levels[l]); i += 2 {
			next = append(next, rfc6962.DefaultHasher.HashChildren(tr.levels[l][i], tr.levels[l][i+1]))
		}
		tr.levels = append(tr.levels, next)
	}
	return tr
}

// root is the RFC 6962 root of the first size entries, by the merkle
// module's compact ranges: not by the code under test's method.
func (tr *tree) root(t *testing.T, size int) []byte {
	t.Helper()
	f := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := f.NewEmptyRange(0)
	for _, h := range tr.levels[0][:size] {
		if err := r.Append(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// writeTiles writes the hash tiles and entry bundles of the tree at size
// under dir, at their tlog-tiles paths (full tiles are shared by all sizes).
func (tr *tree) writeTiles(t *testing.T, dir string, size int) {
	t.Helper()
	write := func(p string, b []byte) {
		f := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for L := 0; ; L++ {
		count := size >> (8 * L)
		if count == 0 {
			break
		}
		for ti := 0; ti*256 < count; ti++ {
			w := min(256, count-ti*256)
			var b []byte
			for _, h := range tr.levels[8*L][ti*256 : ti*256+w] {
				b = append(b, h...)
			}
			write(layout.TilePath(uint64(L), uint64(ti), uint8(w%256)), b)
		}
	}
	for bi := 0; bi*256 < size; bi++ {
		w := min(256, size-bi*256)
		var b []byte
		for _, e := range tr.entries[bi*256 : bi*256+w] {
			b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
			b = append(b, e...)
		}
		write(layout.EntriesPath(uint64(bi), uint8(w%256)), b)
	}
}

func verdict(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, checkpoint.ErrMalformed):
		return "malformed"
	case errors.Is(err, checkpoint.ErrUnverified):
		return "unverified"
	case errors.Is(err, checkpoint.ErrQuorum):
		return "quorum"
	}
	return "error"
}

// TestVerifyJS runs verify.js in node against what the Go code says about
// the same inputs: policies, signed checkpoints, tile paths, and inclusion
// from tiles, right and tampered.
func TestVerifyJS(t *testing.T) {
	nodeBin := node(t)
	const origin = "web.test/log"
	logSkey, logVkey, err := checkpoint.GenerateLogKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	logSigner, err := checkpoint.NewLogSigner(logSkey)
	if err != nil {
		t.Fatal(err)
	}
	ws := []witnessKey{newWitness(t, "web.test/w1"), newWitness(t, "web.test/w2"), newWitness(t, "web.test/w3")}
	stranger := newWitness(t, "web.test/stranger")
	policyText := fmt.Sprintf("# the web test's policy\nlog %s http://127.0.0.1:1/\nwitness w1 %s http://127.0.0.1:2/\nwitness w2 %s\nwitness w3 %s https://w3.example/\ngroup g 2 w1 w2 w3\nquorum g\n",
		logVkey, ws[0].vkey, ws[1].vkey, ws[2].vkey)
	policy, err := checkpoint.ParsePolicy([]byte(policyText))
	if err != nil {
		t.Fatal(err)
	}
	v := vectors{Policy: policyText, TileDir: t.TempDir()}

	// Policies: verify.js must accept exactly what ParsePolicy accepts.
	_, otherLog, _ := checkpoint.GenerateLogKey("other.test/log")
	_, rotated, _ := checkpoint.GenerateLogKey(origin)
	wrongHash := ws[0].vkey[:len(ws[0].name)+1] + "00000000" + ws[0].vkey[len(ws[0].name)+9:]
	upperHash := ws[0].vkey[:len(ws[0].name)+1] + strings.ToUpper(ws[0].vkey[len(ws[0].name)+1:len(ws[0].name)+9]) + ws[0].vkey[len(ws[0].name)+9:]
	w1 := "witness w1 " + ws[0].vkey + "\n"
	w2 := "witness w2 " + ws[1].vkey + "\n"
	lg := "log " + logVkey + "\n"
	for _, p := range []struct{ name, text string }{
		{"the test policy", policyText},
		{"quorum none", lg + "quorum none\n"},
		{"no final newline", lg + "quorum none"},
		{"comments, blanks and tabs", "# c\n\n\t" + lg + "  # x\n" + w1 + "quorum\tw1 # y\n"},
		{"any and all", lg + w1 + w2 + "group a any w1 w2\ngroup b all w1 w2\ngroup c 1 a b\nquorum c\n"},
		{"a key rotation", lg + "log " + rotated + "\nquorum none\n"},
		{"no quorum", lg + w1},
		{"two quorums", lg + "quorum none\nquorum none\n"},
		{"no log", w1 + "quorum w1\n"},
		{"two origins", lg + "log " + otherLog + "\nquorum none\n"},
		{"threshold 0", lg + w1 + "group g 0 w1\nquorum g\n"},
		{"threshold too big", lg + w1 + "group g 2 w1\nquorum g\n"},
		{"threshold 01", lg + w1 + w2 + "group g 01 w1 w2\nquorum g\n"},
		{"member twice", lg + w1 + w2 + "group g 1 w1 w1\nquorum g\n"},
		{"undefined member", lg + w1 + "group g 1 w1 w9\nquorum g\n"},
		{"undefined quorum", lg + w1 + "quorum w9\n"},
		{"quorum before definition", lg + "quorum w1\n" + w1},
		{"name none", lg + "witness none " + ws[0].vkey + "\nquorum none\n"},
		{"name twice", lg + w1 + "witness w1 " + ws[1].vkey + "\nquorum w1\n"},
		{"same key twice", lg + w1 + "witness w9 " + ws[0].vkey + "\nquorum w1\n"},
		{"log key as a witness", lg + "witness w1 " + logVkey + "\nquorum w1\n"},
		{"witness key as the log", "log " + ws[0].vkey + "\nquorum none\n"},
		{"wrong key hash", lg + "witness w1 " + wrongHash + "\nquorum w1\n"},
		{"uppercase key hash", lg + "witness w1 " + upperHash + "\nquorum w1\n"},
		{"carriage return", strings.ReplaceAll(lg+"quorum none\n", "\n", "\r\n")},
		{"control character", lg + "quorum none\x01\n"},
		{"unknown keyword", lg + "quorum none\nwitnesses w1\n"},
		{"ftp URL", "log " + logVkey + " ftp://x.example/\nquorum none\n"},
		{"relative URL", "log " + logVkey + " /x\nquorum none\n"},
		{"too many fields", "log " + logVkey + " http://a/ http://b/\nquorum none\n"},
		{"bad base64", lg + "witness w1 " + ws[0].vkey + "=\nquorum w1\n"},
		{"group without members", lg + "group g 1\nquorum none\n"},
	} {
		_, err := checkpoint.ParsePolicy([]byte(p.text))
		pv := policyVector{Name: p.name, Text: p.text, OK: err == nil}
		if err != nil {
			pv.Error = err.Error()
		}
		v.Policies = append(v.Policies, pv)
	}

	// A tree, its tiles at several sizes, and a checkpoint for each.
	const maxSize = 70000
	tr := newTree(maxSize)
	now := uint64(time.Now().Unix())
	signAt := func(size int) []byte {
		body := checkpoint.Format(checkpoint.Checkpoint{Origin: origin, Size: uint64(size), Hash: tr.root(t, size)})
		signed, err := note.Sign(&note.Note{Text: string(body)}, logSigner)
		if err != nil {
			t.Fatal(err)
		}
		return append(signed, []byte(ws[0].cosignLine(body, now-20)+ws[2].cosignLine(body, now-10))...)
	}
	for _, size := range []int{1, 2, 3, 7, 255, 256, 257, 511, 513, 1000, 65535, 65536, 65537, maxSize} {
		tr.writeTiles(t, v.TileDir, size)
		cp := signAt(size)
		if _, _, err := policy.Verify(cp); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		for _, idx := range []int{0, size - 1, size / 2, size / 3, (size * 7) / 9} {
			v.Inclusions = append(v.Inclusions, inclusionCase{Name: fmt.Sprintf("size %d index %d", size, idx), Checkpoint: string(cp), Index: idx, OK: true})
		}
	}
	// Tampering: a sibling hash at level 0, a node from a higher tile, the
	// entry itself, an index past the tree, a checkpoint without quorum.
	cp := string(signAt(maxSize))
	flip := func(name string, index int, path string, offset int) {
		v.Inclusions = append(v.Inclusions, inclusionCase{Name: name, Checkpoint: cp, Index: index, FailStep: "root", FlipPath: path, FlipOffset: offset})
	}
	flip("level-0 sibling", 1000, layout.TilePath(0, 1000/256, 0), (1001%256)*32+5)
	flip("level-0 sibling in the partial tile", maxSize-2, layout.TilePath(0, maxSize/256, maxSize%256), ((maxSize-1)%256)*32)
	flip("a level-8 node (tile level 1)", 3, layout.TilePath(1, 0, 0), 1*32+31)
	flip("the level-16 node (tile level 2)", maxSize-1, layout.TilePath(2, 0, 1), 0)
	entryAt := 0 // entry 5's offset in its bundle
	for _, e := range tr.entries[:5] {
		entryAt += 2 + len(e)
	}
	flip("the entry itself", 5, layout.EntriesPath(0, 0), entryAt+2+3)
	v.Inclusions = append(v.Inclusions,
		inclusionCase{Name: "index past the tree", Checkpoint: cp, Index: maxSize, FailStep: "leaf"},
		inclusionCase{Name: "quorum not met", Checkpoint: string(signAt(3))[:strings.LastIndex(strings.TrimSuffix(string(signAt(3)), "\n"), "\n")+1], Index: 0, FailStep: "quorum"},
	)
	// The tile a correct check uses for the level-0 sibling must be the one
	// tampered above: otherwise the test proves nothing.
	for _, c := range v.Inclusions {
		if c.FlipPath != "" {
			if _, err := os.Stat(filepath.Join(v.TileDir, filepath.FromSlash(c.FlipPath))); err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
		}
	}

	// Signed checkpoints: verify.js must reach the same verdict as
	// Policy.Verify, with the same cosigners.
	body := checkpoint.Format(checkpoint.Checkpoint{Origin: origin, Size: 3, Hash: tr.root(t, 3)})
	logSigned, err := note.Sign(&note.Note{Text: string(body)}, logSigner)
	if err != nil {
		t.Fatal(err)
	}
	logLine := string(logSigned[len(body)+1:])
	c1, c2, c3 := ws[0].cosignLine(body, now-300), ws[1].cosignLine(body, now-200), ws[2].cosignLine(body, now-100)
	flipB64 := func(line string) string { // a valid line with one signature byte changed, canonical base64
		i := strings.LastIndex(line, " ")
		b, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(line[i+1:]))
		b[len(b)-3] ^= 1
		return line[:i+1] + base64.StdEncoding.EncodeToString(b) + "\n"
	}
	otherSkey, _, _ := checkpoint.GenerateLogKey(origin)
	otherSigner, _ := checkpoint.NewLogSigner(otherSkey)
	otherSigned, _ := note.Sign(&note.Note{Text: string(body)}, otherSigner)
	foreignBody := checkpoint.Format(checkpoint.Checkpoint{Origin: "other.test/log", Size: 3, Hash: tr.root(t, 3)})
	foreignSigned, _ := note.Sign(&note.Note{Text: string(foreignBody)}, logSigner)
	biggerBody := checkpoint.Format(checkpoint.Checkpoint{Origin: origin, Size: 4, Hash: tr.root(t, 3)})
	plain := func(w witnessKey) string { // a 64-byte Ed25519 signature by a witness key: not a cosignature
		sig := ed25519.Sign(w.priv, body)
		b := binary.BigEndian.AppendUint32(nil, w.signer.KeyHash())
		return "— " + w.signer.Name() + " " + base64.StdEncoding.EncodeToString(append(b, sig...)) + "\n"
	}
	nonCanonical := func(line string) string { // the same bytes in a base64 with non-zero padding bits
		i := strings.LastIndex(line, " ")
		s := strings.TrimSpace(line[i+1:])
		j := strings.IndexByte(s, '=') - 1
		const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		k := strings.IndexByte(alpha, s[j])
		return line[:i+1] + s[:j] + string(alpha[k|1]) + s[j+1:] + "\n"
	}
	b := string(body) + "\n"
	for _, c := range []struct{ name, text string }{
		{"log and two witnesses", b + logLine + c1 + c2},
		{"log and three witnesses and a stranger", b + logLine + c1 + stranger.cosignLine(body, now) + c2 + c3},
		{"witnesses first", b + c3 + c1 + logLine},
		{"one witness", b + logLine + c1},
		{"no witness", b + logLine},
		{"a stranger makes no quorum", b + logLine + c1 + stranger.cosignLine(body, now)},
		{"tampered cosignature", b + logLine + c1 + flipB64(c2)},
		{"tampered log signature", b + flipB64(logLine) + c1 + c2},
		{"body changed", string(biggerBody) + "\n" + logLine + c1 + c2},
		{"no log signature", b + c1 + c2},
		{"another key with the log's name", b + string(otherSigned[len(body)+1:]) + c1 + c2},
		{"another origin", string(foreignSigned) + ws[0].cosignLine(foreignBody, now) + ws[1].cosignLine(foreignBody, now)},
		{"plain signature by a witness key", b + logLine + c1 + plain(ws[1])},
		{"non-canonical base64", b + nonCanonical(logLine) + c1 + c2},
		{"duplicate line", b + logLine + c1 + c2 + c2},
		{"CRLF", strings.ReplaceAll(b+logLine+c1+c2, "\n", "\r\n")},
		{"no blank line", string(body) + logLine + c1 + c2},
		{"no signatures", b},
		{"no final newline", b + logLine + c1 + strings.TrimSuffix(c2, "\n")},
		{"leading zero", strings.Replace(b, "\n3\n", "\n03\n", 1) + logLine + c1 + c2},
		{"hyphen for the dash", b + "-" + logLine[len("—"):] + c1 + c2},
	} {
		sv := signedVector{Name: c.name, Text: c.text}
		_, cos, err := policy.Verify([]byte(c.text))
		sv.Verdict = verdict(err)
		if err != nil {
			sv.Error = err.Error()
		} else {
			sv.Cosigners = map[string]int64{}
			for n, ts := range cos {
				sv.Cosigners[n] = ts.Unix()
			}
			if by, ok := policy.QuorumCosignedBy(cos); ok {
				sv.CosignedBy = by.Unix()
			}
		}
		v.Checkpoints = append(v.Checkpoints, sv)
	}

	for _, p := range []struct{ level, index uint64 }{{0, 0}, {0, 999}, {0, 1000}, {1, 1234067}, {2, 1000000}, {0, 5_000_000_000}} {
		for _, w := range []uint8{0, 1, 255} {
			v.Paths = append(v.Paths, pathVector{"tile", p.level, p.index, w, layout.TilePath(p.level, p.index, w)})
			v.Paths = append(v.Paths, pathVector{"entries", 0, p.index, w, layout.EntriesPath(p.index, w)})
		}
	}

	v.Leaves = leafVectors(t)
	for _, l := range v.Leaves {
		t.Logf("leaf vector %s: %s", l.Name, l.Kind)
	}
	v.Openings = openingVectors(t)

	vf := filepath.Join(t.TempDir(), "vectors.json")
	jb, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vf, jb, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nodeBin, "test/verify_test.mjs", vf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("node test/verify_test.mjs:\n%s", out.String())
	if err != nil {
		t.Fatalf("verify.js disagrees with the Go code: %v", err)
	}
	if !strings.Contains(out.String(), "all passed") {
		t.Fatal("the JavaScript tests did not say they all passed")
	}
}
