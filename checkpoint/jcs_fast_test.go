package checkpoint

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// jcsSeeds are inputs for the comparisons with the reference canonicalizer:
// canonical and not, with every kind of value, escapes, white space, and
// what must be refused.
var jcsSeeds = []string{
	`{}`, `[]`, `{ }`, `[ ]`, `""`, `"a"`, `0`, `-0`, `1.50`, `1e2`, `true`, `null`,
	`{"a":1}`, `{"b":1,"a":2}`, `{"a":{"b":[1,2,{"c":"d"}]},"e":[]}`, `{"a" :1}`, `{"a":1 }`,
	`[1,"a",true,null,{"b":2}]`, `[1, 2]`, `[[],[[]],{}]`, `{"a":[{"b":1,"a":2}]}`,
	`{"a":"\u00e9","b":"é","c":"\n","d":"\u001f","e":"\/"}`, `{"\u0061":1}`, `{"a\"b":1}`,
	`{"id":"ev-1","time":"2026-01-01T00:00:00Z","actor":{"id":"u-1","name":"alice","ip":"10.0.0.1"}}`,
	`{"id":12345}`, `{"id":-0}`, `{"id":"a\u0062c"}`, `{"id":1.5e3}`, `{"id":null}`,
	`{"😀":1,"\ufb33":2,"€":3}`, `{"a":1,"a":2}`, `{"b":1,"a":2,"b":3}`, `{"a":1,"\u0061":2}`,
	"\"\xff\"", "\"\xed\xa0\x80\"", "\"abc\x01\"", `"\ud800"`, `"\ud83d\ude00"`, `9007199254740993`,
	`{"a":1}x`, `{"a":1,}`, `[1,]`, `{"a"}`, `"unterminated`, `"\`, `{"a":tru}`, `-`, `01`,
	strings.Repeat(`{"a":`, 64) + `1` + strings.Repeat(`}`, 64),
	strings.Repeat(`[`, 65) + strings.Repeat(`]`, 65),
	`{"details":{"message":"` + strings.Repeat("padding text ", 40) + `"},"z":[` + strings.Repeat(`"x",`, 30) + `"y"]}`,
	string(benchEvent), string(benchK8sEvent),
}

// FuzzCanonicalizeMatchesReference: the canonicalizer agrees with the one
// it replaced (jcs_ref_test.go), byte for byte, on what it accepts and on
// what it refuses, for values and for events (with their ids).
func FuzzCanonicalizeMatchesReference(f *testing.F) {
	for _, s := range jcsSeeds {
		f.Add([]byte(s))
	}
	for _, s := range attackInputs {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// Acceptance, and the kind of refusal (not I-JSON, not an
		// object), must match too: the log answers them differently.
		got, err := Canonicalize(in)
		want, werr := refCanonicalize(in)
		if errClass(err) != errClass(werr) || !bytes.Equal(got, want) {
			t.Fatalf("Canonicalize(%q) = %q, %v; the reference: %q, %v", in, got, err, want, werr)
		}
		if err != nil && !errors.Is(err, ErrNotIJSON) {
			t.Fatalf("Canonicalize(%q): error %v does not wrap ErrNotIJSON", in, err)
		}
		got, id, err := appendCanonicalEvent([]byte("prefix"), in)
		want, wid, werr := refAppendCanonicalEvent([]byte("prefix"), in)
		if errClass(err) != errClass(werr) || !bytes.Equal(got, want) || id != wid {
			t.Fatalf("appendCanonicalEvent(%q) = %q, %+v, %v; the reference: %q, %+v, %v", in, got, id, err, want, wid, werr)
		}
		// And appending to a buffer that is not empty.
		got, err = AppendCanonical([]byte("prefix"), in)
		want, werr = refAppendCanonical([]byte("prefix"), in)
		if errClass(err) != errClass(werr) || !bytes.Equal(got, want) {
			t.Fatalf("AppendCanonical(%q) = %q, %v; the reference: %q, %v", in, got, err, want, werr)
		}
	})
}

// TestStrSpecial: strSpecial finds a byte outside strPlain in every position
// of a word, whatever the other bytes.
func TestStrSpecial(t *testing.T) {
	fill := []byte("abcdefgh")
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			for _, other := range []byte{'a', ' ', '~', 0x7f, '!', '#', '[', ']'} {
				w := bytes.Repeat([]byte{other}, 8)
				copy(w, fill[:pos])
				w[pos] = byte(c)
				var v uint64
				for i := 7; i >= 0; i-- {
					v = v<<8 | uint64(w[i])
				}
				want := false
				for _, b := range w {
					want = want || !strPlain[b]
				}
				if got := strSpecial(v); got != want {
					t.Fatalf("strSpecial(% x) = %v, want %v", w, got, want)
				}
			}
		}
	}
}

// TestAppendReceived: appendReceived writes what AppendFormat writes with
// ReceivedFormat, for times in any zone and at the edges of the layout.
func TestAppendReceived(t *testing.T) {
	zone := time.FixedZone("x", -7*3600-30*60)
	times := []time.Time{
		{}, time.Unix(0, 0), time.Unix(0, 1), time.Unix(1795645861, 504122741).In(zone),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 6, 1, 12, 0, 0, 5, time.UTC),
		time.Date(2026, 2, 28, 23, 59, 59, 999999999, zone),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(400e9)-100e9, r.Int64N(1e9)).In(zone))
	}
	for _, tm := range times {
		got := string(appendReceived([]byte("x"), tm))
		want := string(tm.UTC().AppendFormat([]byte("x"), ReceivedFormat))
		if got != want {
			t.Fatalf("appendReceived(%v) = %q, want %q", tm, got, want)
		}
	}
}

// TestStringValue: the fast path for strings without escapes answers what
// encoding/json answers.
func TestStringValue(t *testing.T) {
	for _, v := range []string{`""`, `"a"`, `"é😀"`, `"a\"b"`, `"a\\b"`, `"\u00e9"`, "\"\x01\"", "\"\xff\"", `"a`, `"`, `x`, `1`} {
		got, err := stringValue([]byte(v))
		want, werr := refStringValue([]byte(v))
		if got != want || (err == nil) != (werr == nil) {
			t.Errorf("stringValue(%q) = %q, %v; encoding/json: %q, %v", v, got, err, want, werr)
		}
	}
}
