package checkpoint

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// The signed checkpoint of the package doc: exampleBody signed by
// exampleLogSKey (Ed25519 signatures are deterministic), and the cosignature
// of exampleWitnessSKey at exampleCosignTime.
const (
	exampleLogSigLine = "— audit.example.com/prod z6FkJYHgs2mV6zpO6J80kccJHo5RxqMBzZOYOXaHYTjyN64jBWz9kwTW5DRgW8Iov/bGaVtgxFwOAPIkLAbkkDcs9g4=\n"
	exampleCosigLine  = "— witness.example.org/w1 GZ5nKgAAAABpVbkAESaYxJNoEEBu0dGI6e7LJwkoK+0Ye+VV68Da3cl+BcOVAJh7Jd7yoSUw8TBWqaHP0ujdGVbJLOeoJjPH/AdLDg==\n"
	exampleSigned     = exampleBody + "\n" + exampleLogSigLine
	exampleCosigned   = exampleSigned + exampleCosigLine
	exampleCosignTime = 1767225600
)

func exampleCheckpoint(t testing.TB) Checkpoint {
	t.Helper()
	c, err := Parse([]byte(exampleBody))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mustVerifier calls newVerifier (NewLogVerifier or NewWitnessVerifier).
func mustVerifier(t testing.TB, newVerifier func(string) (note.Verifier, error), vkey string) note.Verifier {
	t.Helper()
	v, err := newVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignGolden(t *testing.T) {
	signed, err := Sign(exampleCheckpoint(t), exampleLogSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(signed) != exampleSigned {
		t.Errorf("Sign = %q, want %q", signed, exampleSigned)
	}
}

// TestCosignatureGolden checks the cosignature of the package doc, made here
// from the spec's definition with crypto/ed25519 alone, against both this
// package and formats/note.
func TestCosignatureGolden(t *testing.T) {
	k := mustB64(t, strings.TrimPrefix(exampleWitnessSKey, "PRIVATE+KEY+witness.example.org/w1+199e672a+"))
	priv := ed25519.NewKeyFromSeed(k[1:])
	msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", exampleCosignTime, exampleBody)
	sig := binary.BigEndian.AppendUint32(nil, 0x199e672a)
	sig = binary.BigEndian.AppendUint64(sig, exampleCosignTime)
	sig = append(sig, ed25519.Sign(priv, []byte(msg))...)
	if line := "— witness.example.org/w1 " + b64(sig) + "\n"; line != exampleCosigLine {
		t.Fatalf("cosignature line %q, want %q", line, exampleCosigLine)
	}

	wv := mustVerifier(t, NewWitnessVerifier, exampleWitnessVKey)
	got, err := Cosignatures([]byte(exampleCosigned), wv)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Unix(exampleCosignTime, 0).UTC()
	if len(got) != 1 || !got[KeyID(wv)].Equal(want) {
		t.Errorf("Cosignatures = %v, want %s: %s", got, KeyID(wv), want)
	}
	fv, err := fnote.NewVerifierForCosignatureV1(exampleWitnessVKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open([]byte(exampleCosigned), note.VerifierList(fv)); err != nil {
		t.Errorf("formats/note does not verify the cosignature: %v", err)
	}
}

func TestOpen(t *testing.T) {
	lv := mustVerifier(t, NewLogVerifier, exampleLogVKey)
	c, n, err := Open([]byte(exampleCosigned), lv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Origin != "audit.example.com/prod" || c.Size != 10 || b64(c.Hash) != exampleRoot {
		t.Errorf("Open = %+v", c)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Name != "audit.example.com/prod" || len(n.UnverifiedSigs) != 1 || n.UnverifiedSigs[0].Name != "witness.example.org/w1" {
		t.Errorf("note sigs %+v, unverified %+v", n.Sigs, n.UnverifiedSigs)
	}
}

func TestOpenKeyRotation(t *testing.T) {
	oldS, oldV, _ := newTestLogKey(t, "audit.example.com/prod")
	newS, newV, _ := newTestLogKey(t, "audit.example.com/prod")
	c := exampleCheckpoint(t)
	for _, signers := range [][]note.Signer{{oldS}, {newS}, {oldS, newS}} {
		signed, err := Sign(c, signers...)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Open(signed, oldV, newV); err != nil {
			t.Errorf("Open with old and new keys: %v", err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	lv := mustVerifier(t, NewLogVerifier, exampleLogVKey)
	ls := exampleLogSigner(t)
	otherS, otherV, _ := newTestLogKey(t, "other.example.com/log")
	ws, wv, _ := newTestWitnessKey(t, "witness.example.org/w2")
	c := exampleCheckpoint(t)

	// A checkpoint for origin audit.example.com/prod signed by a key named
	// for another origin.
	foreign, err := Sign(c, otherS)
	if err != nil {
		t.Fatal(err)
	}
	// An invalid signature by the log's key: a signature over another body
	// under its name and key hash.
	c2 := c
	c2.Size = 11
	signed2, err := Sign(c2, ls)
	if err != nil {
		t.Fatal(err)
	}
	_, sig2, _ := strings.Cut(string(signed2), "\n\n")
	badSig := exampleBody + "\n" + sig2
	// Only a cosignature.
	cosignedOnly, err := Sign(c, ws)
	if err != nil {
		t.Fatal(err)
	}
	// The last base64 character of the log signature changed in its
	// padding bits only: the same signature bytes.
	padding := strings.Replace(exampleSigned, "9g4=\n", "9g5=\n", 1)
	if n, err := note.Open([]byte(padding), note.VerifierList(lv)); err == nil {
		t.Logf("sumdb/note.Open accepts non-canonical base64 in a signature line (%d valid signatures)", len(n.Sigs))
	}

	for _, tc := range []struct {
		name    string
		signed  string
		keys    []note.Verifier
		wantIs  error
		wantErr string
	}{
		{"no keys", exampleSigned, nil, nil, "at least one log key"},
		{"unknown key only", exampleSigned, []note.Verifier{otherV}, ErrUnverified, "no signature by the given log keys (signed by audit.example.com/prod+cfa16425)"},
		{"key for another origin", string(foreign), []note.Verifier{lv, otherV}, ErrUnverified, "signed only by log keys for other origins"},
		{"invalid signature", badSig, []note.Verifier{lv}, ErrUnverified, "invalid signature by log key audit.example.com/prod+cfa16425"},
		{"invalid signature beside a valid one", exampleSigned + sig2, []note.Verifier{lv}, ErrMalformed, "signature lines 1 and 2 are both by key audit.example.com/prod+cfa16425"},
		{"same signature twice", exampleSigned + exampleLogSigLine, []note.Verifier{lv}, ErrMalformed, "both by key"},
		{"cosignature only", string(cosignedOnly), []note.Verifier{lv}, ErrUnverified, "no signature by the given log keys"},
		{"witness key as log key", string(cosignedOnly), []note.Verifier{wv}, nil, ""},
		{"non-canonical base64", padding, []note.Verifier{lv}, ErrMalformed, "signature line 1: invalid base64"},
		{"body only", exampleBody, []note.Verifier{lv}, ErrMalformed, "no blank line"},
		{"no signatures", exampleBody + "\n", []note.Verifier{lv}, ErrMalformed, "no signature lines"},
		{"no final newline", strings.TrimSuffix(exampleSigned, "\n"), []note.Verifier{lv}, ErrMalformed, "does not end with a newline"},
		{"CRLF", strings.ReplaceAll(exampleSigned, "\n", "\r\n"), []note.Verifier{lv}, ErrMalformed, "carriage return"},
		{"hyphen for em dash", strings.Replace(exampleSigned, "—", "-", 1), []note.Verifier{lv}, ErrMalformed, "does not start with"},
		{"two spaces", strings.Replace(exampleSigned, "prod z6", "prod  z6", 1), []note.Verifier{lv}, ErrMalformed, "signature line 1"},
		{"short signature", exampleSigned + "— x AAAA\n", []note.Verifier{lv}, ErrMalformed, "too short"},
		{"bad body", strings.Replace(exampleSigned, "\n10\n", "\n010\n", 1), []note.Verifier{lv}, ErrMalformed, "leading zero"},
		{"too many signatures", exampleSigned + strings.Repeat(exampleCosigLine, 100), []note.Verifier{lv}, ErrMalformed, "more than the limit of 100"},
		{"too large", exampleBody + strings.Repeat("x", MaxCheckpointSize) + "\n" + "\n" + exampleLogSigLine, []note.Verifier{lv}, ErrMalformed, "more than the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Open([]byte(tc.signed), tc.keys...)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q does not wrap %q", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "checkpoint: ") {
				t.Errorf("error %q, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCosignatures(t *testing.T) {
	ls := exampleLogSigner(t)
	lv := mustVerifier(t, NewLogVerifier, exampleLogVKey)
	w1s, w1v, _ := newTestWitnessKey(t, "w1.example")
	w2s, w2v, _ := newTestWitnessKey(t, "w2.example")
	_, w3v, _ := newTestWitnessKey(t, "w3.example")
	c := exampleCheckpoint(t)

	before := time.Now().Add(-time.Second)
	signed, err := Sign(c, ls, w1s, w2s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Cosignatures(signed, w1v, w2v, w3v)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Cosignatures = %v, want w1 and w2", got)
	}
	for _, v := range []note.Verifier{w1v, w2v} {
		ts, ok := got[KeyID(v)]
		if !ok || ts.Before(before.Truncate(time.Second)) || ts.After(time.Now()) || ts.Location() != time.UTC {
			t.Errorf("cosignature by %s: %v, %v", KeyID(v), ts, ok)
		}
	}

	// No witness among the keys: an empty map.
	if got, err := Cosignatures(signed, w3v); err != nil || len(got) != 0 {
		t.Errorf("Cosignatures by an absent witness = %v, %v", got, err)
	}
	if got, err := Cosignatures(signed); err != nil || len(got) != 0 {
		t.Errorf("Cosignatures with no keys = %v, %v", got, err)
	}
	// A log key passed as a witness key.
	if _, err := Cosignatures(signed, lv); err == nil || !strings.Contains(err.Error(), "not a cosignature/v1") {
		t.Errorf("Cosignatures with a log key: %v", err)
	}
	// An invalid cosignature by a known witness: a cosignature of another
	// checkpoint.
	c2 := c
	c2.Size = 11
	signed2, err := Sign(c2, w1s)
	if err != nil {
		t.Fatal(err)
	}
	_, line, _ := strings.Cut(string(signed2), "\n\n")
	forged := exampleSigned + line
	if _, err := Cosignatures([]byte(forged), w1v); !errors.Is(err, ErrUnverified) {
		t.Errorf("Cosignatures with an invalid cosignature: %v", err)
	}
	// Malformed.
	if _, err := Cosignatures([]byte(exampleBody), w1v); !errors.Is(err, ErrMalformed) {
		t.Errorf("Cosignatures of a body: %v", err)
	}
}

// TestSignatureSingleByteChanges changes every byte of a cosigned checkpoint
// to each of many other characters: Open must refuse every change to the
// body, the blank line and the log signature line; Cosignatures must not
// report the witness for any change to the body, the blank line or its
// cosignature line; Policy.Verify must refuse every change.
func TestSignatureSingleByteChanges(t *testing.T) {
	lv := mustVerifier(t, NewLogVerifier, exampleLogVKey)
	wv := mustVerifier(t, NewWitnessVerifier, exampleWitnessVKey)
	p, err := ParsePolicy([]byte("log " + exampleLogVKey + "\nwitness w1 " + exampleWitnessVKey + "\nquorum w1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Verify([]byte(exampleCosigned)); err != nil {
		t.Fatal(err)
	}
	logLine := [2]int{len(exampleBody) + 1, len(exampleSigned)}
	cosigLine := [2]int{len(exampleSigned), len(exampleCosigned)}
	in := func(i int, r [2]int) bool { return r[0] <= i && i < r[1] }
	n := 0
	eachMutation(exampleCosigned, func(i int, m string) {
		n++
		if _, _, err := p.Verify([]byte(m)); err == nil {
			t.Errorf("byte %d: Policy.Verify accepts %q", i, m)
		}
		if !in(i, cosigLine) {
			if _, _, err := Open([]byte(m), lv); err == nil {
				t.Errorf("byte %d: Open accepts %q", i, m)
			}
		}
		if !in(i, logLine) {
			if got, err := Cosignatures([]byte(m), wv); err == nil && len(got) > 0 {
				t.Errorf("byte %d: Cosignatures reports %v for %q", i, got, m)
			}
		}
	})
	t.Logf("%d changes tried", n)
}

func TestSignedNoteStrictnessMatchesLibrary(t *testing.T) {
	// Whatever checkSignedNote accepts, with a valid signature, note.Open
	// also accepts: our checks only narrow the library's.
	lv := mustVerifier(t, NewLogVerifier, exampleLogVKey)
	for _, s := range []string{exampleSigned, exampleCosigned, exampleCosigned + "— unknown AAAAAAAA\n"} {
		if _, err := checkSignedNote([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open([]byte(s), note.VerifierList(lv)); err != nil {
			t.Errorf("note.Open(%q): %v", s, err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte(exampleSigned))
	f.Add([]byte(exampleCosigned))
	f.Add([]byte(strings.Replace(exampleSigned, "9g4=\n", "9g5=\n", 1)))
	lv := mustVerifier(f, NewLogVerifier, exampleLogVKey)
	wv := mustVerifier(f, NewWitnessVerifier, exampleWitnessVKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, n, err := Open(b, lv)
		if err == nil {
			// Only the exact signed text verifies, beside lines by unknown
			// keys.
			if !bytes.HasPrefix(b, []byte(exampleBody+"\n")) || !bytes.Contains(b, []byte(exampleLogSigLine)) ||
				string(Format(c)) != n.Text || n.Text != exampleBody {
				t.Fatalf("Open accepted %q", b)
			}
		}
		if got, err := Cosignatures(b, wv); err == nil && len(got) > 0 {
			if !bytes.Contains(b, []byte(exampleCosigLine)) || !bytes.HasPrefix(b, []byte(exampleBody+"\n")) {
				t.Fatalf("Cosignatures accepted %q", b)
			}
		}
	})
}

func init() {
	// Make sure the golden signature line really is in canonical base64, so
	// the "non-canonical" test changes what it means to.
	_, sig, _ := strings.Cut(exampleLogSigLine, "prod ")
	b, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(sig, "\n"))
	if err != nil || base64.StdEncoding.EncodeToString(b) != strings.TrimSuffix(sig, "\n") {
		panic("golden signature line is not canonical base64")
	}
}
