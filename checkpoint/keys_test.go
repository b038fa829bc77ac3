package checkpoint

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// The keys of the package doc's worked example, derived from fixed seeds.
const (
	exampleLogSKey     = "PRIVATE+KEY+audit.example.com/prod+cfa16425+ARp7kTkjNFpHlZwhn/iqAeabLAJIBy7rUflgZWfEedOB"
	exampleLogVKey     = "audit.example.com/prod+cfa16425+AfAbCR/YOt2q++hVLONLaVZdTzNJoTjM4QyW8zRA8fGx"
	exampleWitnessSKey = "PRIVATE+KEY+witness.example.org/w1+199e672a+BFeh3Sh2TmZWBtswgu/UXbdlZMlvBTWPNYg4Siy90ikp"
	exampleWitnessVKey = "witness.example.org/w1+199e672a+BAbg4LvQPpM2FY+CAYcLjdT3bM5TS45ro9BnC2ri05DU"
)

func exampleLogSigner(t testing.TB) note.Signer {
	t.Helper()
	s, err := NewLogSigner(exampleLogSKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newTestLogKey returns a new log key's signer, verifier and vkey.
func newTestLogKey(t testing.TB, origin string) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := GenerateLogKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewLogSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewLogVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, vkey
}

// newTestWitnessKey returns a new witness key's signer, verifier and vkey.
func newTestWitnessKey(t testing.TB, name string) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := GenerateWitnessKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewWitnessSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewWitnessVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, vkey
}

func TestGenerateLogKey(t *testing.T) {
	skey, vkey, err := GenerateLogKey("audit.example.com/prod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(skey, "PRIVATE+KEY+audit.example.com/prod+") || !strings.HasPrefix(vkey, "audit.example.com/prod+") {
		t.Fatalf("keys %q, %q", skey, vkey)
	}
	s, err := NewLogSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewLogVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	// The keys load the same way with sumdb/note itself.
	if _, err := note.NewSigner(skey); err != nil {
		t.Errorf("sumdb/note refuses the secret key: %v", err)
	}
	if _, err := note.NewVerifier(vkey); err != nil {
		t.Errorf("sumdb/note refuses the public key: %v", err)
	}
	if s.Name() != v.Name() || s.KeyHash() != v.KeyHash() || KeyID(v) != keyIDOf(vkey) {
		t.Errorf("signer %s+%08x, verifier %s", s.Name(), s.KeyHash(), KeyID(v))
	}
	sig, err := s.Sign([]byte("hello\n"))
	if err != nil || !v.Verify([]byte("hello\n"), sig) {
		t.Errorf("signature does not verify: %v", err)
	}
	// Witness functions refuse log keys.
	if _, err := NewWitnessSigner(skey); err == nil || !strings.Contains(err.Error(), "key type is 0x01, want 0x04") {
		t.Errorf("NewWitnessSigner(log key) error = %v", err)
	}
	if _, err := NewWitnessVerifier(vkey); err == nil || !strings.Contains(err.Error(), "key type is 0x01, want 0x04") {
		t.Errorf("NewWitnessVerifier(log key) error = %v", err)
	}
}

func TestGenerateWitnessKey(t *testing.T) {
	skey, vkey, err := GenerateWitnessKey("witness.example.org/w1")
	if err != nil {
		t.Fatal(err)
	}
	// The keys load with formats/note, as Tessera loads them.
	fs, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatalf("formats/note refuses the secret key: %v", err)
	}
	fv, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatalf("formats/note refuses the public key: %v", err)
	}
	s, err := NewWitnessSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewWitnessVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	want := keyIDOf(vkey)
	for _, k := range []interface {
		Name() string
		KeyHash() uint32
	}{fs, fv, s, v} {
		if got := fmt.Sprintf("%s+%08x", k.Name(), k.KeyHash()); got != want {
			t.Errorf("key ID %s, want %s (from the vkey)", got, want)
		}
	}
	msg := []byte(exampleBody)
	for _, signer := range []note.Signer{fs, s} {
		sig, err := signer.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(sig) != 8+64 {
			t.Errorf("cosignature is %d bytes, want 72", len(sig))
		}
		if !v.Verify(msg, sig) || !fv.Verify(msg, sig) {
			t.Error("cosignature does not verify")
		}
	}
	// sumdb/note cannot load a type 0x04 key, and log functions refuse it.
	if _, err := note.NewVerifier(vkey); err == nil {
		t.Error("sumdb/note accepts a cosignature/v1 key")
	}
	if _, err := NewLogSigner(skey); err == nil || !strings.Contains(err.Error(), "key type is 0x04, want 0x01") {
		t.Errorf("NewLogSigner(witness key) error = %v", err)
	}
	if _, err := NewLogVerifier(vkey); err == nil || !strings.Contains(err.Error(), "key type is 0x04, want 0x01") {
		t.Errorf("NewLogVerifier(witness key) error = %v", err)
	}
}

func TestGenerateKeyBadNames(t *testing.T) {
	for _, name := range []string{"", "a b", "a+b", "a\tb", "a\nb", "a\x01b", "a\u00a0b", "\xff"} {
		if _, _, err := GenerateLogKey(name); err == nil {
			t.Errorf("GenerateLogKey(%q) succeeded", name)
		}
		if _, _, err := GenerateWitnessKey(name); err == nil {
			t.Errorf("GenerateWitnessKey(%q) succeeded", name)
		}
	}
}

func TestKeysInvalid(t *testing.T) {
	// A witness key whose hash was computed over type 0x01, as
	// formats/note.VKeyToCosignatureV1 would not do but a careless
	// generator might: formats/note.NewVerifierForCosignatureV1 accepts it.
	pub := strings.TrimPrefix(exampleWitnessVKey, "witness.example.org/w1+199e672a+")
	wrongHash := fmt.Sprintf("witness.example.org/w1+%08x+%s", keyHash("witness.example.org/w1", append([]byte{1}, mustB64(t, pub)[1:]...)), pub)
	for _, tc := range []struct {
		name    string
		f       func(string) (any, error)
		key     string
		wantErr string
	}{
		{"log: empty", logV, "", "want name+hash+key"},
		{"log: no key", logV, "audit.example.com/prod+cfa16425", "want name+hash+key"},
		{"log: uppercase hash", logV, strings.Replace(exampleLogVKey, "cfa16425", "CFA16425", 1), "not 8 lowercase hex digits"},
		{"log: short hash", logV, strings.Replace(exampleLogVKey, "cfa16425", "fa16425", 1), "not 8 lowercase hex digits"},
		{"log: wrong hash", logV, strings.Replace(exampleLogVKey, "cfa16425", "cfa16426", 1), "does not match the key"},
		{"log: bad name", logV, "audit example+cfa16425+AfAbCR/YOt2q++hVLONLaVZdTzNJoTjM4QyW8zRA8fGx", "name"},
		{"log: short key", logV, "audit.example.com/prod+cfa16425+AfAbCR/YOt2q++hVLONLaVZdTzNJoTjM4QyW8zRA8fE=", "32 bytes"},
		{"log: newline in base64", logV, exampleLogVKey[:50] + "\n" + exampleLogVKey[50:], "base64"},
		{"log: trailing newline", logV, exampleLogVKey + "\n", "base64"},
		{"log: secret key as public", logV, exampleLogSKey, "not 8 lowercase hex digits"},
		{"log: too long", logV, strings.Repeat("a", 2000), "more than"},
		{"witness: wrong-type hash", witnessV, wrongHash, "does not match the key"},
		{"witness: uppercase hash", witnessV, strings.Replace(exampleWitnessVKey, "199e672a", "199E672A", 1), "not 8 lowercase hex digits"},
		{"witness: log key", witnessV, exampleLogVKey, "key type is 0x01"},
		{"log secret: public key", logS, exampleLogVKey, "does not start with PRIVATE+KEY+"},
		{"log secret: wrong hash", logS, strings.Replace(exampleLogSKey, "cfa16425", "cfa16424", 1), "does not match the key"},
		{"log secret: uppercase hash", logS, strings.Replace(exampleLogSKey, "cfa16425", "CFA16425", 1), "not 8 lowercase hex digits"},
		{"witness secret: log key", witnessS, exampleLogSKey, "key type is 0x01"},
		{"witness secret: wrong hash", witnessS, strings.Replace(exampleWitnessSKey, "199e672a", "199e672b", 1), "does not match the key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.f(tc.key)
			if err == nil {
				t.Fatalf("%q accepted", tc.key)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrMalformed) {
				t.Errorf("error %q, want one containing %q and wrapping ErrMalformed", err, tc.wantErr)
			}
		})
	}
	if _, err := fnote.NewVerifierForCosignatureV1(wrongHash); err == nil {
		t.Logf("formats/note accepts a cosignature key with a wrong key hash; NewWitnessVerifier does not")
	}
}

// keyIDOf returns the name+hash prefix of a vkey (whose base64 may hold '+').
func keyIDOf(vkey string) string {
	name, rest, _ := strings.Cut(vkey, "+")
	hash, _, _ := strings.Cut(rest, "+")
	return name + "+" + hash
}

func logV(k string) (any, error)     { return NewLogVerifier(k) }
func witnessV(k string) (any, error) { return NewWitnessVerifier(k) }
func logS(k string) (any, error)     { return NewLogSigner(k) }
func witnessS(k string) (any, error) { return NewWitnessSigner(k) }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := decodeCanonicalBase64([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutationBytes are the replacements tried at each position of a key or
// signature: every printable ASCII character (the base64 and hex alphabets,
// '+', '/', '=', upper and lower case, space) and a few others.
func mutationBytes() []byte {
	b := []byte{0, '\t', '\n', '\r', 0x7f, 0x80, 0xc3, 0xe2, 0xff}
	for c := byte(0x20); c < 0x7f; c++ {
		b = append(b, c)
	}
	return b
}

// eachMutation calls f with every single-byte change of s.
func eachMutation(s string, f func(i int, m string)) {
	for i := 0; i < len(s); i++ {
		for _, c := range mutationBytes() {
			if c == s[i] {
				continue
			}
			m := []byte(s)
			m[i] = c
			f(i, string(m))
		}
	}
}

func TestKeySingleByteChanges(t *testing.T) {
	msg := []byte(exampleBody)
	for _, tc := range []struct {
		name  string
		vkey  string
		skey  string
		newV  func(string) (note.Verifier, error)
		newS  func(string) (note.Signer, error)
		other func(string) (note.Verifier, error)
	}{
		{"log", exampleLogVKey, exampleLogSKey, NewLogVerifier, NewLogSigner, NewWitnessVerifier},
		{"witness", exampleWitnessVKey, exampleWitnessSKey, NewWitnessVerifier, NewWitnessSigner, NewLogVerifier},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.newS(tc.skey)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			eachMutation(tc.vkey, func(i int, m string) {
				if v, err := tc.newV(m); err == nil {
					t.Errorf("byte %d: changed key %q accepted (verifies the original signature: %v)", i, m, v.Verify(msg, sig))
				}
				if _, err := tc.other(m); err == nil {
					t.Errorf("byte %d: changed key %q accepted as the other kind of key", i, m)
				}
			})
			eachMutation(tc.skey, func(i int, m string) {
				if _, err := tc.newS(m); err == nil {
					t.Errorf("byte %d: changed secret key %q accepted", i, m)
				}
			})
		})
	}
}

func FuzzNewLogVerifier(f *testing.F) {
	f.Add(exampleLogVKey)
	f.Add(exampleWitnessVKey)
	f.Add(strings.Replace(exampleLogVKey, "cfa16425", "CFA16425", 1))
	f.Fuzz(func(t *testing.T, vkey string) {
		v, err := NewLogVerifier(vkey)
		if err != nil {
			return
		}
		checkCanonicalVKey(t, vkey, v, keyTypeEd25519)
		if _, err := note.NewVerifier(vkey); err != nil {
			t.Fatalf("NewLogVerifier accepts %q, sumdb/note refuses it: %v", vkey, err)
		}
	})
}

func FuzzNewWitnessVerifier(f *testing.F) {
	f.Add(exampleWitnessVKey)
	f.Add(exampleLogVKey)
	f.Add(strings.Replace(exampleWitnessVKey, "199e672a", "199E672A", 1))
	f.Fuzz(func(t *testing.T, vkey string) {
		v, err := NewWitnessVerifier(vkey)
		if err != nil {
			return
		}
		checkCanonicalVKey(t, vkey, v, keyTypeCosignatureV1)
		if _, err := fnote.NewVerifierForCosignatureV1(vkey); err != nil {
			t.Fatalf("NewWitnessVerifier accepts %q, formats/note refuses it: %v", vkey, err)
		}
	})
}

// checkCanonicalVKey checks that an accepted vkey is the one text its name,
// type and key format to, with the right hash.
func checkCanonicalVKey(t *testing.T, vkey string, v note.Verifier, typ byte) {
	t.Helper()
	k, err := parseVerifierKey(vkey, typ, "test")
	if err != nil {
		t.Fatalf("verifier made from %q, which does not parse: %v", vkey, err)
	}
	pub := append([]byte{typ}, k.key...)
	want := fmt.Sprintf("%s+%08x+%s", v.Name(), keyHash(v.Name(), pub), b64(pub))
	if vkey != want {
		t.Fatalf("accepted %q, canonical form %q", vkey, want)
	}
}
