package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

// receiptFixture is a log of 13 entries with two log keys (a rotation) and
// three witnesses, under a 2-of-3 policy.
type receiptFixture struct {
	tree     *testonly.Tree
	leaves   [][]byte
	oldKey   note.Signer
	newKey   note.Signer
	wits     []note.Signer
	policy   *Policy // old and new log keys
	oldOnly  *Policy
	newOnly  *Policy
	wvkeys   []string
	logVKeys []string
}

func newReceiptFixture(t *testing.T) *receiptFixture {
	t.Helper()
	f := &receiptFixture{tree: testonly.New(rfc6962.DefaultHasher)}
	for i := range 13 {
		l := fmt.Appendf(nil, `{"event":{"n":%d},"received":"2026-01-01T00:00:00.000000000Z","source":"x","v":1}`, i)
		f.leaves = append(f.leaves, l)
		f.tree.AppendData(l)
	}
	for _, k := range []*note.Signer{&f.oldKey, &f.newKey} {
		skey, vkey, err := GenerateLogKey("audit.example.com/prod")
		if err != nil {
			t.Fatal(err)
		}
		*k, _ = NewLogSigner(skey)
		f.logVKeys = append(f.logVKeys, vkey)
	}
	for i := range 3 {
		skey, vkey, _ := GenerateWitnessKey(fmt.Sprintf("w%d.example.org", i))
		s, _ := NewWitnessSigner(skey)
		f.wits = append(f.wits, s)
		f.wvkeys = append(f.wvkeys, vkey)
	}
	pol := func(logs ...string) *Policy {
		var b strings.Builder
		for _, l := range logs {
			b.WriteString("log " + l + "\n")
		}
		for i, w := range f.wvkeys {
			fmt.Fprintf(&b, "witness w%d %s\n", i, w)
		}
		b.WriteString("group g 2 w0 w1 w2\nquorum g\n")
		p, err := ParsePolicy([]byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	f.policy = pol(f.logVKeys...)
	f.oldOnly = pol(f.logVKeys[0])
	f.newOnly = pol(f.logVKeys[1])
	return f
}

// proof returns the tlog-proof of entry index in the whole tree, signed by
// signers.
func (f *receiptFixture) proof(t *testing.T, index uint64, signers ...note.Signer) []byte {
	t.Helper()
	size := uint64(f.tree.Size())
	signed, err := Sign(Checkpoint{Origin: "audit.example.com/prod", Size: size, Hash: f.tree.Hash()}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := f.tree.InclusionProof(index, size)
	if err != nil {
		t.Fatal(err)
	}
	return FormatProof(Proof{Index: index, Hashes: hashes, Checkpoint: signed})
}

func TestProofFormat(t *testing.T) {
	f := newReceiptFixture(t)
	text := f.proof(t, 5, f.oldKey, f.wits[0], f.wits[1])
	p, err := ParseProof(text)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(FormatProof(p), text) {
		t.Fatalf("FormatProof(ParseProof(x)) != x:\n%s", text)
	}
	lines := strings.Split(string(text), "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" || lines[1] != "index 5" || len(p.Hashes) != 4 || lines[6] != "" || lines[7] != "audit.example.com/prod" {
		t.Fatalf("unexpected layout:\n%s", text)
	}
	withExtra := FormatProof(Proof{Extra: []byte("x"), Index: p.Index, Hashes: p.Hashes, Checkpoint: p.Checkpoint})
	if q, err := ParseProof(withExtra); err != nil || string(q.Extra) != "x" || !bytes.Equal(FormatProof(q), withExtra) {
		t.Fatalf("extra line: %v", err)
	}
}

func TestParseProofIsStrict(t *testing.T) {
	f := newReceiptFixture(t)
	good := string(f.proof(t, 5, f.oldKey))
	h := strings.Split(good, "\n")[2]
	for name, text := range map[string]string{
		"no header":          strings.TrimPrefix(good, "c2sp.org/tlog-proof@v1\n"),
		"other version":      strings.Replace(good, "@v1", "@v2", 1),
		"leading zero":       strings.Replace(good, "index 5\n", "index 05\n", 1),
		"signed index":       strings.Replace(good, "index 5\n", "index +5\n", 1),
		"two spaces":         strings.Replace(good, "index 5\n", "index  5\n", 1),
		"CRLF":               strings.Replace(good, "index 5\n", "index 5\r\n", 1),
		"empty extra":        strings.Replace(good, "index 5\n", "extra \nindex 5\n", 1),
		"extra after index":  strings.Replace(good, "index 5\n", "index 5\nextra eA==\n", 1),
		"short hash":         strings.Replace(good, h+"\n", "AAAA\n", 1),
		"non-canonical hash": strings.Replace(good, h+"\n", h[:42]+"B=\n", 1),
		"hash with space":    strings.Replace(good, h+"\n", h+" \n", 1),
		"no blank line":      strings.Replace(good, "\n\naudit", "\naudit", 1),
		"no checkpoint":      good[:strings.Index(good, "\n\n")+2],
		"trailing bytes":     good + "x",
		"bad checkpoint":     strings.Replace(good, "\naudit.example.com/prod\n13\n", "\naudit.example.com/prod\n013\n", 1),
	} {
		if text == good {
			t.Fatalf("%s: the change did nothing", name)
		}
		if _, err := ParseProof([]byte(text)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseProof = %v, want ErrMalformed", name, err)
		}
	}
	many := "c2sp.org/tlog-proof@v1\nindex 0\n" + strings.Repeat(h+"\n", MaxProofHashes+1) + "\n" + good[strings.Index(good, "\n\n")+2:]
	if _, err := ParseProof([]byte(many)); !errors.Is(err, ErrMalformed) {
		t.Errorf("65 hashes: %v", err)
	}
}

func TestVerifyReceipt(t *testing.T) {
	f := newReceiptFixture(t)
	text := f.proof(t, 5, f.oldKey, f.wits[0], f.wits[2])
	c, cos, err := VerifyReceipt(f.policy, f.leaves[5], text)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 13 || len(cos) != 2 || cos["w0"].IsZero() || cos["w2"].IsZero() {
		t.Fatalf("checkpoint %+v cosigners %v", c, cos)
	}
	// Made before a rotation (old key), checked after it (old and new).
	if _, _, err := VerifyReceipt(f.oldOnly, f.leaves[5], text); err != nil {
		t.Errorf("old-key policy: %v", err)
	}
	// A policy that dropped the old key no longer trusts it.
	if _, _, err := VerifyReceipt(f.newOnly, f.leaves[5], text); !errors.Is(err, ErrUnverified) {
		t.Errorf("new-key-only policy: %v, want ErrUnverified", err)
	}
	// Signed by both keys during the rotation: good for the policy with
	// both. A policy without one of them refuses it, since a receipt is
	// refused whole when a signature line cannot be checked (a changed
	// byte in a key hash must not go unnoticed).
	both := f.proof(t, 12, f.newKey, f.oldKey, f.wits[1], f.wits[2])
	if _, _, err := VerifyReceipt(f.policy, f.leaves[12], both); err != nil {
		t.Errorf("rotation receipt: %v", err)
	}
	for _, p := range []*Policy{f.oldOnly, f.newOnly} {
		if _, _, err := VerifyReceipt(p, f.leaves[12], both); !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), "not a key of the policy") {
			t.Errorf("rotation receipt, policy with one key: %v", err)
		}
	}

	for name, tc := range map[string]struct {
		leaf, proof []byte
		want        error
	}{
		"other leaf":     {f.leaves[4], text, ErrProof},
		"one cosigner":   {f.leaves[5], f.proof(t, 5, f.oldKey, f.wits[0]), ErrQuorum},
		"no log sig":     {f.leaves[5], f.proof(t, 5, f.wits[0], f.wits[1]), ErrUnverified},
		"unknown signer": {f.leaves[5], f.proof(t, 5, f.oldKey, f.wits[0], f.wits[1], mustSigner(t)), ErrUnverified},
	} {
		if _, _, err := VerifyReceipt(f.policy, tc.leaf, tc.proof); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func mustSigner(t *testing.T) note.Signer {
	skey, _, _ := GenerateWitnessKey("stranger.example")
	s, err := NewWitnessSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReceiptEveryByteMatters changes every byte of the leaf and of the
// proof (its index, hashes, checkpoint and signatures), one at a time and in
// three ways, and expects each change to be refused.
func TestReceiptEveryByteMatters(t *testing.T) {
	f := newReceiptFixture(t)
	leaf := f.leaves[5]
	text := f.proof(t, 5, f.oldKey, f.newKey, f.wits[0], f.wits[1], f.wits[2])
	if _, _, err := VerifyReceipt(f.policy, leaf, text); err != nil {
		t.Fatal(err)
	}
	for _, target := range []struct {
		name string
		b    []byte
	}{{"leaf", leaf}, {"proof", text}} {
		for i := range target.b {
			for _, change := range []func(byte) byte{
				func(b byte) byte { return b ^ 0x01 },
				func(b byte) byte { return b ^ 0x20 },
				func(b byte) byte {
					if b == 'A' {
						return 'B'
					}
					return 'A'
				},
			} {
				orig := target.b[i]
				target.b[i] = change(orig)
				_, _, err := VerifyReceipt(f.policy, leaf, text)
				target.b[i] = orig
				if err == nil {
					t.Errorf("%s byte %d changed from %q to %q: still verifies", target.name, i, orig, change(orig))
				}
			}
		}
	}
}

func FuzzParseProof(f *testing.F) {
	fx := newReceiptFixture(&testing.T{})
	f.Add(fx.proof(&testing.T{}, 5, fx.oldKey, fx.wits[0]))
	f.Add(FormatProof(Proof{Extra: []byte{1}, Index: 0, Checkpoint: []byte("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAAAAAAAA==\n")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProof(b)
		if err != nil {
			return
		}
		if !bytes.Equal(FormatProof(p), b) {
			t.Fatalf("ParseProof accepted a text that FormatProof does not give back:\n%q\n%q", b, FormatProof(p))
		}
	})
}
