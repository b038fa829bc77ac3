// Command gen writes the test vectors of checkpoint/testdata (see the
// README.md there) with implementations other than Tidemark's: the
// cosignatures are made by filippo.io/torchwood's CosignatureSigner, the
// checkpoint bodies by torchwood's Checkpoint, the log signatures by
// golang.org/x/mod/sumdb/note, and the Merkle trees and proofs by
// golang.org/x/mod/sumdb/tlog. It is a module of its own and must never
// import github.com/tidemark/tidemark: the vectors check Tidemark's code, so
// they must not come from it.
//
// Run it from its directory, and commit what changes:
//
//	cd checkpoint/testdata/gen && go run .
//
// Everything is deterministic: keys come from fixed seeds, Ed25519
// signatures are deterministic, and the timestamps are fixed. torchwood's
// signer stamps each cosignature with time.Now, so each one is made inside a
// testing/synctest bubble, whose fake clock starts at 2000-01-01T00:00:00Z
// and is moved to the vector's time with time.Sleep. synctest needs a
// *testing.T, so main runs the generator as the one test of testing.Main
// (which exists for programs that run tests outside "go test").
//
// Every vector is checked here too, with torchwood and with a construction
// written from the C2SP specs with crypto/ed25519 alone, before it is
// written: the generator fails rather than write a vector that its own
// libraries disagree on, unless the vector records the disagreement.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// outDir is where the vectors go: checkpoint/testdata, from gen's directory.
const outDir = ".."

func main() {
	testing.Main(func(pat, str string) (bool, error) { return true, nil },
		[]testing.InternalTest{{Name: "GenerateVectors", F: generate}}, nil, nil)
}

// origin is the test log's origin, and the name of its key.
const origin = "vectors.tidemark.example/log"

// t0 is 2026-01-01T00:00:00Z, the first cosignature time.
const t0 = 1767225600

// ---- JSON of the vector files ----

type keyJSON struct {
	Name     string `json:"name"`
	Seed     string `json:"seed"` // hex; SHA-256 of seedPrefix + name
	SKey     string `json:"skey"`
	VKey     string `json:"vkey"`
	InPolicy bool   `json:"in_policy"`
}

type cosigJSON struct {
	Witness string `json:"witness"`
	Time    int64  `json:"time"`
	Line    string `json:"line"`
}

type signedJSON struct {
	Name         string      `json:"name"`
	Description  string      `json:"description"`
	Body         string      `json:"body"`
	LogSignature string      `json:"log_signature"`
	Cosignatures []cosigJSON `json:"cosignatures"`
	Signed       string      `json:"signed"`
}

type invalidJSON struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Signed      string `json:"signed"`
	// Check names the function of Tidemark that must refuse the note:
	// "open" (the log's signature), "cosignatures" (the witnesses'), or
	// "quorum" (no error from either, but the policy's quorum is not met).
	Check string `json:"check"`
	// Error is the sentinel the error must wrap.
	Error string `json:"error"`
	// TorchwoodAccepts is whether x/mod's note.Open with torchwood's
	// verifiers (the log's and the two policy witnesses') verifies the
	// log's and both witnesses' signatures.
	TorchwoodAccepts bool `json:"torchwood_accepts"`
}

type invalidKeyJSON struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Role        string `json:"role"` // "log" or "witness"
	Kind        string `json:"kind"` // "vkey" or "skey"
	Key         string `json:"key"`
}

type cosignaturesFile struct {
	Comment     []string         `json:"comment"`
	Log         keyJSON          `json:"log"`
	Witnesses   []keyJSON        `json:"witnesses"`
	Valid       []signedJSON     `json:"valid"`
	Invalid     []invalidJSON    `json:"invalid"`
	InvalidKeys []invalidKeyJSON `json:"invalid_keys"`
}

type proofJSON struct {
	Size     uint64   `json:"size"`
	Index    uint64   `json:"index"`
	Leaf     []byte   `json:"leaf"`      // base64
	LeafHash []byte   `json:"leaf_hash"` // base64
	Root     []byte   `json:"root"`      // base64
	Hashes   [][]byte `json:"hashes"`    // base64 each
	Extra    []byte   `json:"extra,omitempty"`
	Text     string   `json:"text"` // the tlog-proof@v1 text
}

type proofsFile struct {
	Comment   []string    `json:"comment"`
	Log       keyJSON     `json:"log"`
	Witnesses []keyJSON   `json:"witnesses"`
	Entries   [][]byte    `json:"entries"` // base64 each
	Proofs    []proofJSON `json:"proofs"`
}

type consistencyJSON struct {
	OldSize uint64   `json:"old_size"`
	NewSize uint64   `json:"new_size"`
	OldRoot []byte   `json:"old_root"`
	NewRoot []byte   `json:"new_root"`
	Hashes  [][]byte `json:"hashes"`
}

type consistencyFile struct {
	Comment []string          `json:"comment"`
	Proofs  []consistencyJSON `json:"proofs"`
}

// ---- keys ----

const seedPrefix = "tidemark checkpoint test vectors: "

type witness struct {
	json   keyJSON
	priv   ed25519.PrivateKey
	signer *torchwood.CosignatureSigner
}

func seedFor(name string) []byte {
	s := sha256.Sum256([]byte(seedPrefix + name))
	return s[:]
}

// keyHash is signed-note's key ID, written from the spec.
func keyHash(name string, typeAndKey []byte) uint32 {
	h := sha256.Sum256(append([]byte(name+"\n"), typeAndKey...))
	return binary.BigEndian.Uint32(h[:4])
}

func skeyFor(name string, typ byte, seed []byte) string {
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	h := keyHash(name, append([]byte{typ}, pub...))
	return fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, h, b64(append([]byte{typ}, seed...)))
}

func newWitness(t *testing.T, name string, inPolicy bool) *witness {
	seed := seedFor(name)
	priv := ed25519.NewKeyFromSeed(seed)
	s, err := torchwood.NewCosignatureSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	w := &witness{priv: priv, signer: s, json: keyJSON{
		Name:     name,
		Seed:     hex.EncodeToString(seed),
		SKey:     skeyFor(name, 0x04, seed),
		VKey:     s.Verifier().String(),
		InPolicy: inPolicy,
	}}
	// The vkey from the spec: name+keyID+base64(0x04 || public key).
	pub := priv.Public().(ed25519.PublicKey)
	want := fmt.Sprintf("%s+%08x+%s", name, keyHash(name, append([]byte{0x04}, pub...)), b64(append([]byte{0x04}, pub...)))
	if w.json.VKey != want {
		t.Fatalf("torchwood's vkey %s, the spec's %s", w.json.VKey, want)
	}
	return w
}

type logKey struct {
	json     keyJSON
	priv     ed25519.PrivateKey
	signer   note.Signer
	verifier note.Verifier // torchwood's
}

func newLogKey(t *testing.T) *logKey {
	seed := seedFor(origin)
	priv := ed25519.NewKeyFromSeed(seed)
	skey := skeyFor(origin, 0x01, seed)
	vkey, err := note.NewEd25519VerifierKey(origin, priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := torchwood.NewVerifierFromSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyHash() != s.KeyHash() {
		t.Fatalf("torchwood and x/mod give the log key hashes %08x and %08x", v.KeyHash(), s.KeyHash())
	}
	return &logKey{priv: priv, signer: s, verifier: v, json: keyJSON{
		Name: origin, Seed: hex.EncodeToString(seed), SKey: skey, VKey: vkey, InPolicy: true,
	}}
}

// ---- signatures ----

// sigLines returns the signature lines of a signed note, each with its "\n".
func sigLines(t *testing.T, signed []byte) []string {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		t.Fatalf("no signatures in %q", signed)
	}
	return strings.SplitAfter(strings.TrimSuffix(string(signed[i+2:]), "\n"), "\n")
}

func fixLast(lines []string) []string {
	if n := len(lines); n > 0 && !strings.HasSuffix(lines[n-1], "\n") {
		lines[n-1] += "\n"
	}
	return lines
}

// logSign returns the log's signature line over body, made by x/mod's
// note.Sign and checked against crypto/ed25519 over the note text.
func (l *logKey) sign(t *testing.T, body string) string {
	signed, err := note.Sign(&note.Note{Text: body}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	line := fixLast(sigLines(t, signed))[0]
	want := sigLine(origin, binary.BigEndian.AppendUint32(nil, l.signer.KeyHash()), ed25519.Sign(l.priv, []byte(body)))
	if line != want {
		t.Fatalf("x/mod note signs %q, the spec %q", line, want)
	}
	return line
}

func sigLine(name string, parts ...[]byte) string {
	return "— " + name + " " + b64(slices.Concat(parts...)) + "\n"
}

// cosignAt returns the cosignature line of s over body at Unix time ts,
// made by torchwood inside a synctest bubble whose clock reads ts, and
// checked against the spec's construction.
func cosignAt(t *testing.T, s *torchwood.CosignatureSigner, priv ed25519.PrivateKey, body string, ts int64) string {
	var line string
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Unix(ts, 0).Sub(time.Now()))
		if now := time.Now().Unix(); now != ts {
			t.Fatalf("the bubble's clock reads %d, want %d", now, ts)
		}
		signed, err := note.Sign(&note.Note{Text: body}, s)
		if err != nil {
			t.Fatal(err)
		}
		line = fixLast(sigLines(t, signed))[0]
	})
	if want := specCosignature(s.Name(), s.KeyHash(), priv, body, uint64(ts)); line != want {
		t.Fatalf("torchwood cosigns %q, the spec %q", line, want)
	}
	return line
}

// specCosignature is a cosignature/v1 line written from C2SP
// tlog-cosignature with crypto/ed25519 alone.
func specCosignature(name string, id uint32, priv ed25519.PrivateKey, body string, ts uint64) string {
	msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", ts, body)
	return sigLine(name, binary.BigEndian.AppendUint32(nil, id), binary.BigEndian.AppendUint64(nil, ts), ed25519.Sign(priv, []byte(msg)))
}

// lineBytes splits a signature line into its key name and decoded bytes.
func lineBytes(t *testing.T, line string) (string, []byte) {
	rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "— ")
	name, sig64, ok2 := strings.Cut(rest, " ")
	if !ok || !ok2 {
		t.Fatalf("bad signature line %q", line)
	}
	sig, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil {
		t.Fatal(err)
	}
	return name, sig
}

// mutate returns line with its decoded bytes changed by f.
func mutate(t *testing.T, line string, f func(sig []byte)) string {
	name, sig := lineBytes(t, line)
	f(sig)
	return sigLine(name, sig)
}

// ---- checkpoints ----

type tree struct {
	entries [][]byte
	stored  []tlog.Hash
}

func (tr *tree) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = tr.stored[x]
		}
		return out, nil
	})
}

func newTree(t *testing.T, n int) *tree {
	tr := &tree{}
	for i := range n {
		e := fmt.Appendf(nil, "tidemark test vector entry %d", i)
		hs, err := tlog.StoredHashes(int64(i), e, tr.reader())
		if err != nil {
			t.Fatal(err)
		}
		tr.entries = append(tr.entries, e)
		tr.stored = append(tr.stored, hs...)
	}
	return tr
}

func (tr *tree) root(t *testing.T, n uint64) tlog.Hash {
	h, err := tlog.TreeHash(int64(n), tr.reader())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// body formats a checkpoint body with torchwood and checks that torchwood
// parses it back.
func body(t *testing.T, n uint64, root tlog.Hash, ext ...string) string {
	var e string
	for _, l := range ext {
		e += l + "\n"
	}
	c := torchwood.Checkpoint{Origin: origin, Tree: tlog.Tree{N: int64(n), Hash: root}, Extension: e}
	s := c.String()
	back, err := torchwood.ParseCheckpoint(s)
	if err != nil || back != c {
		t.Fatalf("torchwood does not parse its own checkpoint %q: %v", s, err)
	}
	return s
}

type signer struct {
	log       *logKey
	witnesses []*witness // w1, w2 (in the policy), w3 (not)
}

// signed makes a signedJSON: body signed by the log, then cosigned by each
// of ws at the matching time.
func (s *signer) signed(t *testing.T, name, desc, b string, ws []*witness, times []int64) signedJSON {
	v := signedJSON{Name: name, Description: desc, Body: b, LogSignature: s.log.sign(t, b)}
	v.Signed = b + "\n" + v.LogSignature
	for i, w := range ws {
		line := cosignAt(t, w.signer, w.priv, b, times[i])
		v.Cosignatures = append(v.Cosignatures, cosigJSON{Witness: w.json.Name, Time: times[i], Line: line})
		v.Signed += line
	}
	if !s.torchwoodAccepts(t, v.Signed) {
		t.Fatalf("torchwood refuses the valid vector %s", name)
	}
	return v
}

// torchwoodAccepts reports whether x/mod's note.Open, with torchwood's
// verifiers for the log and the policy's witnesses, verifies a signature by
// each of them.
func (s *signer) torchwoodAccepts(t *testing.T, signed string) bool {
	vs := []note.Verifier{s.log.verifier}
	for _, w := range s.witnesses {
		if w.json.InPolicy {
			vs = append(vs, w.signer.Verifier())
		}
	}
	n, err := note.Open([]byte(signed), note.VerifierList(vs...))
	if err != nil {
		return false
	}
	got := map[string]bool{}
	for _, sig := range n.Sigs {
		got[fmt.Sprintf("%s+%08x", sig.Name, sig.Hash)] = true
	}
	for _, v := range vs {
		if !got[fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())] {
			return false
		}
	}
	return true
}

// ---- the vectors ----

func generate(t *testing.T) {
	lk := newLogKey(t)
	w1 := newWitness(t, "witness1.example/w", true)
	w2 := newWitness(t, "witness2.example/w", true)
	w3 := newWitness(t, "witness3.example/w", false)
	s := &signer{log: lk, witnesses: []*witness{w1, w2, w3}}
	keys := []keyJSON{w1.json, w2.json, w3.json}
	both := []*witness{w1, w2}

	const maxSize = 100
	tr := newTree(t, maxSize)

	writeJSON(t, "cosignatures.json", cosignatureVectors(t, s, tr, keys))
	writeJSON(t, "proofs.json", proofVectors(t, s, tr, keys, both))
	writeJSON(t, "consistency.json", consistencyVectors(t, tr))
}

func cosignatureVectors(t *testing.T, s *signer, tr *tree, keys []keyJSON) cosignaturesFile {
	lk, w1, w2, w3 := s.log, s.witnesses[0], s.witnesses[1], s.witnesses[2]
	both := []*witness{w1, w2}
	f := cosignaturesFile{
		Comment: []string{
			"Signed checkpoints (C2SP signed-note, tlog-checkpoint, tlog-cosignature cosignature/v1) made by another implementation than Tidemark's: see README.md.",
			"Generated by checkpoint/testdata/gen (" + versions() + "); regenerate with: cd checkpoint/testdata/gen && go run .",
			"The policy for these vectors: the log key, and the witnesses with in_policy true, all of which must cosign.",
		},
		Log:       lk.json,
		Witnesses: keys,
	}

	body0 := body(t, 0, tr.root(t, 0))
	body1 := body(t, 1, tr.root(t, 1))
	body10 := body(t, 10, tr.root(t, 10))
	body11 := body(t, 11, tr.root(t, 11))
	bodyExt := body(t, 17, tr.root(t, 17), "tidemark.example/ext alpha", "second extension line, with spaces 1 2 3")
	bodyNoExt := body(t, 17, tr.root(t, 17))

	f.Valid = []signedJSON{
		s.signed(t, "size-0", "the empty tree: size 0, root SHA-256 of nothing", body0, both, []int64{t0, t0 + 1}),
		s.signed(t, "size-1", "one entry", body1, both, []int64{t0 + 60, t0 + 75}),
		s.signed(t, "size-10", "ten entries; witness 2 cosigned a day after witness 1", body10, both, []int64{t0 + 3600, t0 + 3600 + 86400}),
		s.signed(t, "size-11", "eleven entries, cosigned in the other order", body11, []*witness{w2, w1}, []int64{t0 + 7200, t0 + 7199}),
		s.signed(t, "extension-lines", "17 entries and two extension lines, which cosignatures cover", bodyExt, both, []int64{t0 + 10800, t0 + 10801}),
		s.signed(t, "unknown-witness", "cosigned also by witness 3, which is not in the policy: its line is ignored", body10, []*witness{w1, w3, w2}, []int64{t0 + 14400, t0 + 14401, t0 + 14402}),
		s.signed(t, "timestamps-far-apart", "cosignatures at 2000-01-01T00:00:00Z and at 2^32 (in 2106, beyond 32-bit time), both valid", body1, both, []int64{946684800, 1 << 32}),
	}
	base := f.Valid[2] // size-10, cosigned by w1 then w2
	logLine, c1, c2 := base.LogSignature, base.Cosignatures[0].Line, base.Cosignatures[1].Line
	note10 := body10 + "\n" + logLine

	var invalid []invalidJSON
	add := func(name, desc, signed, check, sentinel string, torchwoodAccepts bool) {
		if got := s.torchwoodAccepts(t, signed); got != torchwoodAccepts {
			t.Fatalf("%s: torchwood accepts: %v, want %v", name, got, torchwoodAccepts)
		}
		invalid = append(invalid, invalidJSON{name, desc, signed, check, sentinel, torchwoodAccepts})
	}

	add("cosignature-timestamp-plus-one",
		"witness 1's timestamp bytes changed to the next second, its signature unchanged",
		note10+mutate(t, c1, func(sig []byte) { sig[4+7]++ })+c2, "cosignatures", "ErrUnverified", false)
	add("cosignature-timestamp-high-bit",
		"witness 1's timestamp with its top bit set (beyond 2^63-1), its signature unchanged",
		note10+mutate(t, c1, func(sig []byte) { sig[4] |= 0x80 })+c2, "cosignatures", "ErrUnverified", false)
	// torchwood can't sign at 2^63 (time.Time stops before), so this one is
	// built from the spec. torchwood's CosignatureVerifier accepts it;
	// torchwood.CosignatureTimestamp refuses it, and the spec says the
	// timestamp MUST NOT exceed 2^63-1.
	beyond := specCosignature(w1.json.Name, w1.signer.KeyHash(), w1.priv, body10, 1<<63)
	if _, err := torchwood.CosignatureTimestamp(sigOf(t, beyond)); err == nil {
		t.Fatal("torchwood.CosignatureTimestamp accepts a timestamp of 2^63")
	}
	add("cosignature-timestamp-2^63",
		"witness 1 validly signed a timestamp of 2^63, which tlog-cosignature forbids (MUST NOT exceed 2^63-1); built from the spec, since torchwood's signer can't reach that time. torchwood's verifier accepts it; its CosignatureTimestamp refuses it",
		note10+beyond+c2, "cosignatures", "ErrMalformed", true)
	c1on11 := cosignAt(t, w1.signer, w1.priv, body11, t0+3600)
	add("cosignature-over-other-body",
		"witness 1's line is its cosignature (same time) of the checkpoint of size 11",
		note10+c1on11+c2, "cosignatures", "ErrUnverified", false)
	c1ext := cosignAt(t, w1.signer, w1.priv, bodyExt, t0+10800)
	c1noext := cosignAt(t, w1.signer, w1.priv, bodyNoExt, t0+10800)
	c2noext := cosignAt(t, w2.signer, w2.priv, bodyNoExt, t0+10801)
	c2ext := cosignAt(t, w2.signer, w2.priv, bodyExt, t0+10801)
	add("cosignature-extension-lines-dropped",
		"the checkpoint without extension lines, with witness 1's cosignature of the same checkpoint with its two extension lines",
		bodyNoExt+"\n"+lk.sign(t, bodyNoExt)+c1ext+c2noext, "cosignatures", "ErrUnverified", false)
	add("cosignature-extension-lines-added",
		"the checkpoint with two extension lines, with witness 1's cosignature of the same checkpoint without them",
		bodyExt+"\n"+lk.sign(t, bodyExt)+c1noext+c2ext, "cosignatures", "ErrUnverified", false)
	add("cosignature-signature-bit-flipped",
		"one bit of witness 1's Ed25519 signature flipped",
		note10+mutate(t, c1, func(sig []byte) { sig[4+8+10] ^= 0x01 })+c2, "cosignatures", "ErrUnverified", false)
	add("cosignature-wrong-key-id",
		"witness 2's key ID changed by one: the line is by an unknown key, which verifiers must ignore, so the quorum of both witnesses is not met",
		note10+c1+mutate(t, c2, func(sig []byte) { sig[3]++ }), "quorum", "ErrQuorum", false)
	add("cosignature-duplicate-witness",
		"witness 1 cosigned twice, at two times; both lines are valid. signed-note does not forbid it; Tidemark refuses two lines by one key, x/mod's note.Open (and so torchwood) verifies the first and skips the second",
		note10+c1+cosignAt(t, w1.signer, w1.priv, body10, t0+3601)+c2, "cosignatures", "ErrMalformed", true)
	lkCosigner, err := torchwood.NewCosignatureSigner(origin, lk.priv)
	if err != nil {
		t.Fatal(err)
	}
	add("log-key-cosignature-instead-of-log-signature",
		"no log signature: instead, a cosignature/v1 (key type 0x04) by the log's own Ed25519 key, named after the origin, which is not the log's key (type 0x01)",
		body10+"\n"+cosignAt(t, lkCosigner, lk.priv, body10, t0+3600)+c1+c2, "open", "ErrUnverified", false)
	add("witness-key-plain-signature",
		"witness 1's line is a plain signed-note Ed25519 signature of the body (no timestamp, 64 bytes) by its key, under its cosignature/v1 key ID",
		note10+sigLine(w1.json.Name, binary.BigEndian.AppendUint32(nil, w1.signer.KeyHash()), ed25519.Sign(w1.priv, []byte(body10)))+c2,
		"cosignatures", "ErrUnverified", false)
	add("log-signature-bit-flipped",
		"one bit of the log's signature flipped",
		body10+"\n"+mutate(t, logLine, func(sig []byte) { sig[4+20] ^= 0x80 })+c1+c2, "open", "ErrUnverified", false)
	f.Invalid = invalid

	w1pub := w1.priv.Public().(ed25519.PublicKey)
	w1as01, err := note.NewEd25519VerifierKey(w1.json.Name, w1pub)
	if err != nil {
		t.Fatal(err)
	}
	f.InvalidKeys = []invalidKeyJSON{
		{"log-vkey-cosignature-type", "the log's public key as a cosignature/v1 vkey (type 0x04, as torchwood writes it)", "log", "vkey", lkCosigner.Verifier().String()},
		{"log-vkey-is-witness-vkey", "witness 1's vkey (type 0x04) used as a log key", "log", "vkey", w1.json.VKey},
		{"log-skey-is-witness-skey", "witness 1's secret key (type 0x04) used as a log's", "log", "skey", w1.json.SKey},
		{"log-vkey-wrong-key-id", "the log's vkey with its key ID's last hex digit changed", "log", "vkey", bumpKeyID(lk.json.VKey)},
		{"witness-vkey-ed25519-type", "witness 1's public key as a plain Ed25519 vkey (type 0x01), with the key ID of that type", "witness", "vkey", w1as01},
		{"witness-vkey-is-log-vkey", "the log's vkey (type 0x01) used as a witness key", "witness", "vkey", lk.json.VKey},
		{"witness-skey-is-log-skey", "the log's secret key (type 0x01) used as a witness's", "witness", "skey", lk.json.SKey},
		{"witness-vkey-wrong-key-id", "witness 1's vkey with its key ID's last hex digit changed", "witness", "vkey", bumpKeyID(w1.json.VKey)},
	}
	return f
}

func sigOf(t *testing.T, line string) note.Signature {
	name, sig := lineBytes(t, line)
	return note.Signature{Name: name, Hash: binary.BigEndian.Uint32(sig), Base64: b64(sig)}
}

// bumpKeyID changes the last hex digit of the key ID of a vkey.
func bumpKeyID(vkey string) string {
	name, rest, _ := strings.Cut(vkey, "+")
	id, key, _ := strings.Cut(rest, "+")
	last := id[7]
	if last == 'f' {
		last = '0'
	} else if last == '9' {
		last = 'a'
	} else {
		last++
	}
	return name + "+" + id[:7] + string(last) + "+" + key
}

// proofSizes are the tree sizes of the inclusion proofs: 1, powers of two,
// and odd and even sizes around them.
var proofSizes = []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 17, 31, 32, 33, 100}

func proofVectors(t *testing.T, s *signer, tr *tree, keys []keyJSON, both []*witness) proofsFile {
	f := proofsFile{
		Comment: []string{
			"C2SP tlog-proof@v1 texts: inclusion proofs by golang.org/x/mod/sumdb/tlog (ProveRecord), in the format written from the spec (torchwood " + torchwoodVersion + " has no tlog-proof), with checkpoints signed by the log (x/mod sumdb/note) and cosigned by witnesses 1 and 2 (torchwood).",
			"Generated by checkpoint/testdata/gen (" + versions() + "); regenerate with: cd checkpoint/testdata/gen && go run .",
			"entries[i] is the entry at index i; a tree of size n holds entries[:n]. The leaf hash is RFC 6962's, SHA-256(0x00 || entry).",
		},
		Log:       s.log.json,
		Witnesses: keys,
		Entries:   tr.entries,
	}
	for k, size := range proofSizes {
		root := tr.root(t, size)
		b := body(t, size, root)
		ts := t0 + 86400 + int64(k)*600
		cp := s.signed(t, "", "", b, both, []int64{ts, ts + 13}).Signed
		for _, idx := range proofIndexes(size) {
			p, err := tlog.ProveRecord(int64(size), int64(idx), tr.reader())
			if err != nil {
				t.Fatal(err)
			}
			leafHash := tlog.RecordHash(tr.entries[idx])
			if err := tlog.CheckRecord(p, int64(size), root, int64(idx), leafHash); err != nil {
				t.Fatalf("sumdb/tlog refuses its own proof of %d in %d: %v", idx, size, err)
			}
			v := proofJSON{Size: size, Index: idx, Leaf: tr.entries[idx], LeafHash: leafHash[:], Root: root[:]}
			v.Hashes = [][]byte{}
			for _, h := range p {
				v.Hashes = append(v.Hashes, bytes.Clone(h[:]))
			}
			if size == 13 && idx == 6 {
				v.Extra = []byte("opaque extra data: not authenticated")
			}
			v.Text = formatProof(v, cp)
			f.Proofs = append(f.Proofs, v)
		}
	}
	return f
}

// proofIndexes: every index of a small tree; the first two, the middle and
// the last two of a larger one.
func proofIndexes(size uint64) []uint64 {
	if size <= 9 {
		var all []uint64
		for i := range size {
			all = append(all, i)
		}
		return all
	}
	return []uint64{0, 1, size / 2, size - 2, size - 1}
}

// formatProof writes a tlog-proof@v1 text as C2SP tlog-proof says: the
// header line, an optional "extra <base64>" line, "index N", the proof
// hashes in base64 from the leaf's sibling up, an empty line, and the
// signed checkpoint verbatim.
func formatProof(p proofJSON, checkpoint string) string {
	var b strings.Builder
	b.WriteString("c2sp.org/tlog-proof@v1\n")
	if p.Extra != nil {
		b.WriteString("extra " + b64(p.Extra) + "\n")
	}
	fmt.Fprintf(&b, "index %d\n", p.Index)
	for _, h := range p.Hashes {
		b.WriteString(b64(h) + "\n")
	}
	b.WriteString("\n")
	b.WriteString(checkpoint)
	return b.String()
}

func consistencyVectors(t *testing.T, tr *tree) consistencyFile {
	f := consistencyFile{Comment: []string{
		"RFC 6962 consistency proofs by golang.org/x/mod/sumdb/tlog (ProveTree) between every pair of sizes old <= new of proofs.json's sizes, over the entries of proofs.json.",
		"Generated by checkpoint/testdata/gen (" + versions() + "); regenerate with: cd checkpoint/testdata/gen && go run .",
	}}
	for _, n := range proofSizes {
		for _, m := range proofSizes {
			if m > n {
				continue
			}
			p, err := tlog.ProveTree(int64(n), int64(m), tr.reader())
			if err != nil {
				t.Fatal(err)
			}
			oldRoot, newRoot := tr.root(t, m), tr.root(t, n)
			if err := tlog.CheckTree(p, int64(n), newRoot, int64(m), oldRoot); err != nil {
				t.Fatalf("sumdb/tlog refuses its own proof from %d to %d: %v", m, n, err)
			}
			v := consistencyJSON{OldSize: m, NewSize: n, OldRoot: oldRoot[:], NewRoot: newRoot[:], Hashes: [][]byte{}}
			for _, h := range p {
				v.Hashes = append(v.Hashes, bytes.Clone(h[:]))
			}
			f.Proofs = append(f.Proofs, v)
		}
	}
	return f
}

// ---- output ----

const torchwoodVersion = "v0.6.1"

// versions names the modules that made the vectors, as built.
func versions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		panic("no build info")
	}
	var vs []string
	for _, d := range bi.Deps {
		if d.Path == "filippo.io/torchwood" || d.Path == "golang.org/x/mod" {
			if d.Path == "filippo.io/torchwood" && d.Version != torchwoodVersion {
				panic("built with torchwood " + d.Version + ", want " + torchwoodVersion)
			}
			vs = append(vs, d.Path+" "+d.Version)
		}
	}
	return strings.Join(vs, ", ")
}

func writeJSON(t *testing.T, name string, v any) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	e.SetIndent("", "  ")
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outDir, name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
