package witness

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"github.com/tidemark/tidemark/checkpoint"
	"golang.org/x/mod/sumdb/note"
)

// smallOrder are encodings of points of order 1, 2, 4 and 8, canonical and
// not (y >= p, or x = 0 with the sign bit set), from "Taming the many
// EdDSAs" (Chalkias et al., 2020).
var smallOrder = []string{
	"0100000000000000000000000000000000000000000000000000000000000000",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"0000000000000000000000000000000000000000000000000000000000000080",
	"0000000000000000000000000000000000000000000000000000000000000000",
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
	"0100000000000000000000000000000000000000000000000000000000000080",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
}

// mixedKey is an Ed25519 key pair whose public point is aB + T, T of order
// 8, and a signer that signs for it as RFC 8032 does for aB: its signatures
// pass the cofactored equation always and crypto/ed25519's cofactorless one
// only when [k]T is the identity.
type mixedKey struct {
	a      *edwards25519.Scalar
	prefix []byte
	pub    []byte
}

func newMixedKey(t *testing.T, seed []byte, torsion string) *mixedKey {
	h := sha512.Sum512(seed)
	a, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := hex.DecodeString(torsion)
	T, err := new(edwards25519.Point).SetBytes(tb)
	if err != nil {
		t.Fatal(err)
	}
	A := new(edwards25519.Point).Add(new(edwards25519.Point).ScalarBaseMult(a), T)
	return &mixedKey{a: a, prefix: h[32:], pub: A.Bytes()}
}

func (m *mixedKey) sign(msg []byte) []byte {
	rh := sha512.Sum512(append(append([]byte{}, m.prefix...), msg...))
	r, _ := edwards25519.NewScalar().SetUniformBytes(rh[:])
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	kh := sha512.Sum512(append(append(append([]byte{}, R...), m.pub...), msg...))
	k, _ := edwards25519.NewScalar().SetUniformBytes(kh[:])
	S := edwards25519.NewScalar().MultiplyAdd(k, m.a, r)
	return append(R, S.Bytes()...)
}

// addL returns the 32-byte little-endian S + L (mod 2^256): the same scalar,
// not canonically encoded.
func addL(s []byte) []byte {
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	le := func(b []byte) *big.Int {
		be := make([]byte, len(b))
		for i := range b {
			be[len(b)-1-i] = b[i]
		}
		return new(big.Int).SetBytes(be)
	}
	v := new(big.Int).Add(le(s), l)
	be := v.FillBytes(make([]byte, 33))[1:]
	out := make([]byte, 32)
	for i := range out {
		out[i] = be[31-i]
	}
	return out
}

// TestLogKeyVerifyIsCryptoEd25519 holds logKey.verify to crypto/ed25519.Verify
// on valid signatures, corrupted ones, non-canonical S, small-order and
// non-canonical R, small-order, non-canonical and off-curve keys, and keys
// with a torsion component (where cofactored and cofactorless verification
// differ).
func TestLogKeyVerifyIsCryptoEd25519(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type keyCase struct {
		name string
		pub  []byte
		sign func(msg []byte) []byte
	}
	var keys []keyCase
	for i := range 4 {
		seed := make([]byte, 32)
		seed[0] = byte(i)
		priv := ed25519.NewKeyFromSeed(seed)
		keys = append(keys, keyCase{fmt.Sprint("key", i), priv.Public().(ed25519.PublicKey), func(m []byte) []byte { return ed25519.Sign(priv, m) }})
	}
	for i, tor := range smallOrder[1:8] {
		seed := make([]byte, 32)
		seed[0] = byte(100 + i)
		m := newMixedKey(t, seed, tor)
		keys = append(keys, keyCase{"mixed" + tor[:4], m.pub, m.sign})
	}
	for _, so := range smallOrder {
		pub, _ := hex.DecodeString(so)
		keys = append(keys, keyCase{"small" + so[:4] + so[62:], pub, func(m []byte) []byte {
			// R = identity and S = 0 pass for the identity key.
			sig := make([]byte, 64)
			sig[0] = 1
			return sig
		}})
	}
	var offCurve []byte
	for b := byte(2); offCurve == nil; b++ {
		if _, err := new(edwards25519.Point).SetBytes(bytes.Repeat([]byte{b}, 32)); err != nil {
			offCurve = bytes.Repeat([]byte{b}, 32)
		}
	}
	keys = append(keys, keyCase{"offcurve", offCurve, func(m []byte) []byte { return make([]byte, 64) }})

	checked, accepted := 0, 0
	mixed := map[bool]int{} // crypto/ed25519's verdicts on the mixed keys' own signatures
	for _, kc := range keys {
		k := &logKey{pub: kc.pub}
		check := func(what string, msg, sig []byte) {
			t.Helper()
			want := ed25519.Verify(kc.pub, msg, sig)
			if got := k.verify(msg, sig); got != want {
				t.Errorf("%s, %s: logKey.verify %v, crypto/ed25519 %v (sig %x)", kc.name, what, got, want, sig)
			}
			checked++
			if want {
				accepted++
			}
		}
		for m := range 24 {
			msg := fmt.Appendf(nil, "example.com/log\n%d\nJ0sT9Htc5zE5GqXGAR8swwjZNcxwvLmTjf6SKMrzpZI=\n", m)
			sig := kc.sign(msg)
			check("as signed", msg, sig)
			if strings.HasPrefix(kc.name, "mixed") {
				mixed[ed25519.Verify(kc.pub, msg, sig)]++
			}
			check("other message", append(msg, 'x'), sig)
			check("short", msg, sig[:63])
			check("long", msg, append(append([]byte{}, sig...), 0))
			for range 4 {
				bad := append([]byte{}, sig...)
				bad[rng.IntN(64)] ^= 1 << rng.IntN(8)
				check("bit flipped", msg, bad)
			}
			for _, bits := range []byte{0x20, 0x40, 0x80} {
				bad := append([]byte{}, sig...)
				bad[63] |= bits
				check(fmt.Sprintf("s[31] | %#x", bits), msg, bad)
			}
			check("S + L", msg, append(append([]byte{}, sig[:32]...), addL(sig[32:])...))
			for _, so := range smallOrder {
				r, _ := hex.DecodeString(so)
				check("R "+so[:4], msg, append(r, sig[32:]...))
				zeroS := append(append([]byte{}, r...), make([]byte, 32)...)
				check("R "+so[:4]+", S 0", msg, zeroS)
			}
		}
	}
	if accepted < 200 || mixed[true] == 0 || mixed[false] == 0 {
		t.Errorf("%d of %d cases valid, the mixed keys' signatures %v valid: the test hardly checks acceptance", accepted, checked, mixed)
	}
	t.Logf("%d cases, %d valid; the mixed keys' signatures: %v valid", checked, accepted, mixed)
}

// TestFastVerifyAgreesWithOpen: whenever the fast path accepts a signed
// checkpoint, the libraries accept it too and keep the same signature
// lines; and it does accept the ordinary cases.
func TestFastVerifyAgreesWithOpen(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	rotated := newTestLog(t, "example.com/log")
	rotated.tree = l.tree
	other := newTestLog(t, "other.example/log")
	junkSkey, _, _ := checkpoint.GenerateLogKey("junk.example/evil")
	junk, _ := checkpoint.NewLogSigner(junkSkey)
	wSkey, _, _ := checkpoint.GenerateWitnessKey("junk.example/witness")
	wit, _ := checkpoint.NewWitnessSigner(wSkey)

	listed := func(origin string, logs ...*testLog) *knownLog {
		var ll []ListedLog
		for _, tl := range logs {
			v, err := checkpoint.NewLogVerifier(tl.vkey)
			if err != nil {
				t.Fatal(err)
			}
			ll = append(ll, ListedLog{VKey: tl.vkey, Verifier: v, Origin: origin, QPD: 1})
		}
		return buildTable(ll, nil).byOrigin[origin]
	}
	sign := func(origin string, tree *testLog, signers ...note.Signer) []byte {
		b, err := note.Sign(&note.Note{Text: string(checkpoint.Format(checkpoint.Checkpoint{Origin: origin, Size: 5, Hash: tree.tree.HashAt(5)}))}, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	corrupt := func(signed []byte, which int) []byte {
		// Flip a bit of the which-th signature line's signature.
		text := signed[:bytes.LastIndex(signed, []byte("\n\n"))+2]
		lines := bytes.SplitAfter(signed[len(text):], []byte("\n"))
		line := lines[which]
		sp := bytes.LastIndexByte(line, ' ')
		sig, _ := base64.StdEncoding.DecodeString(string(line[sp+1 : len(line)-1]))
		sig[10] ^= 4
		lines[which] = append(append(append([]byte{}, line[:sp+1]...), base64.StdEncoding.EncodeToString(sig)...), '\n')
		return append(append([]byte{}, text...), bytes.Join(lines, nil)...)
	}
	both := listed("example.com/log", l, rotated)
	byOther := listed("example.com/alias", l)
	twice := &knownLog{origin: "example.com/log", verifiers: append(both.verifiers[:1:1], both.verifiers[0]), keys: append(both.keys[:1:1], both.keys[0])}
	noFast := &knownLog{origin: "example.com/log", verifiers: both.verifiers, keys: []*logKey{nil, nil}}
	cases := []struct {
		name   string
		kl     *knownLog
		signed []byte
		fast   bool // the fast path must accept it
	}{
		{"one key", listed("example.com/log", l), l.checkpoint(5), true},
		{"rotation: old key", both, sign("example.com/log", l, l.signer), true},
		{"rotation: new key", both, sign("example.com/log", l, rotated.signer), true},
		{"rotation: both keys", both, sign("example.com/log", l, l.signer, rotated.signer), true},
		{"junk around", both, sign("example.com/log", l, junk, l.signer, wit), true},
		{"origin other than the key's name", byOther, sign("example.com/alias", l, l.signer), true},
		{"no key of the log", both, sign("example.com/log", l, junk, wit), false},
		{"another log's key", listed("example.com/log", l), sign("example.com/log", l, other.signer), false},
		{"bad signature", both, corrupt(sign("example.com/log", l, l.signer), 0), false},
		{"one of two bad", both, corrupt(sign("example.com/log", l, l.signer, rotated.signer), 1), false},
		{"junk bad", both, corrupt(sign("example.com/log", l, junk, l.signer), 0), true},
		{"one key listed twice", twice, sign("example.com/log", l, l.signer), false},
		{"no fast keys", noFast, sign("example.com/log", l, l.signer), false},
	}
	for _, tc := range cases {
		c, text, err := parseSigned(tc.signed)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		lines, ok := fastVerify(tc.signed, text, tc.kl)
		slow, err := openLogSignature(tc.signed, c, tc.kl)
		if ok && (err != nil || !bytes.Equal(lines, slow)) {
			t.Errorf("%s: the fast path accepts with lines %q, the libraries say %q, %v", tc.name, lines, slow, err)
		}
		if ok != tc.fast {
			t.Errorf("%s: fast path %v, want %v (libraries: %v)", tc.name, ok, tc.fast, err)
		}
		got, gerr := verifyLogSignature(tc.signed, text, c, tc.kl)
		if !bytes.Equal(got, slow) || fmt.Sprint(gerr) != fmt.Sprint(err) {
			t.Errorf("%s: verifyLogSignature gives %q, %v; the libraries %q, %v", tc.name, got, gerr, slow, err)
		}
	}
}

// FuzzLogKeyVerify: logKey.verify is crypto/ed25519.Verify on any key,
// message and signature.
func FuzzLogKeyVerify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	msg := []byte("example.com/log\n5\nJ0sT9Htc5zE5GqXGAR8swwjZNcxwvLmTjf6SKMrzpZI=\n")
	f.Add([]byte(priv.Public().(ed25519.PublicKey)), msg, ed25519.Sign(priv, msg))
	for _, so := range smallOrder {
		b, _ := hex.DecodeString(so)
		f.Add(b, msg, append(b, make([]byte, 32)...))
	}
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if len(pub) != ed25519.PublicKeySize {
			return
		}
		if got, want := (&logKey{pub: pub}).verify(msg, sig), ed25519.Verify(pub, msg, sig); got != want {
			t.Errorf("logKey.verify %v, crypto/ed25519 %v", got, want)
		}
	})
}

// BenchmarkVerifyLogSignature: the fast path against the libraries alone,
// on a checkpoint signed by its log's one key.
func BenchmarkVerifyLogSignature(b *testing.B) {
	skey, vkey, _ := checkpoint.GenerateLogKey("example.com/log")
	signer, _ := checkpoint.NewLogSigner(skey)
	v, _ := checkpoint.NewLogVerifier(vkey)
	kl := buildTable([]ListedLog{{VKey: vkey, Verifier: v, Origin: "example.com/log", QPD: 1}}, nil).byOrigin["example.com/log"]
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "example.com/log", Size: 5, Hash: make([]byte, 32)}, signer)
	if err != nil {
		b.Fatal(err)
	}
	c, text, err := parseSigned(signed)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := verifyLogSignature(signed, text, c, kl); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("libraries", func(b *testing.B) {
		for b.Loop() {
			if _, err := openLogSignature(signed, c, kl); err != nil {
				b.Fatal(err)
			}
		}
	})
}
