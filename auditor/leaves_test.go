package auditor

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/rfc6962"
)

func TestClassify(t *testing.T) {
	leaf, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(`{"b":[1,-2,{"c":null}],"a":"x","é":"ü"}`), time.Now(), "src", "key-1")
	if err != nil {
		t.Fatal(err)
	}
	plain, _, _, _ := checkpoint.AppendEventLeaf(nil, []byte(`{"action":"a","n":12,"ok":true}`), time.Now(), "src", "")
	for _, tc := range []struct {
		leaf string
		want leafClass
		fast bool
	}{
		{string(plain), leafEvent, true},
		{string(leaf), leafEvent, false}, // non-ASCII: the slow path
		{`{"event":{"n":1.5},"received":"2026-11-25T22:31:01.504122741Z","source":"s","v":1}`, leafEvent, false},
		{`{"event":{},"received":"2026-11-25T22:31:01.504122741Z","source":"s","v":1}`, leafEvent, true},
		{`{"event":{"b":1,"a":2},"received":"2026-11-25T22:31:01.504122741Z","source":"s","v":1}`, leafBad, false},
		{`{"event":{},"received":"2026-11-25T22:31:01Z","source":"s","v":1}`, leafBad, false},
		{`{"event":{}, "received":"2026-11-25T22:31:01.504122741Z","source":"s","v":1}`, leafBad, false},
		{`{"event":{"n":01},"received":"2026-11-25T22:31:01.504122741Z","source":"s","v":1}`, leafRaw, false}, // not JSON: claims nothing
		{`{"v":1,"event":{}}`, leafBad, false},
		{`{"event":{}}`, leafRaw, false},
		{`hello`, leafRaw, false},
		{`{"commitment":"` + strings.Repeat("ab", 32) + `","received":"2026-11-25T22:31:01.504122741Z","source":"s","v":2}`, leafCommitment, false},
		{`{"commitment":"` + strings.Repeat("AB", 32) + `","received":"2026-11-25T22:31:01.504122741Z","source":"s","v":2}`, leafBad, false},
		{`{"v":2,"commitment":"` + strings.Repeat("ab", 32) + `","received":"2026-11-25T22:31:01.504122741Z","source":"s"}`, leafBad, false},
		{`{"erasure":{"entries":[[1,3]],"reason":"r"},"received":"2026-11-25T22:31:01.504122741Z","source":"admin","v":2}`, leafErasure, false},
		{`{"erasure":{"entries":[[3,1]],"reason":"r"},"received":"2026-11-25T22:31:01.504122741Z","source":"admin","v":2}`, leafBad, false},
		{`{"erasure":{"entries":[[1,3]]},"v":2}`, leafBad, false},
		// Not JSON, though its first and last bytes are a leaf's: the raw
		// endpoint takes it, so it is raw, not a false alarm.
		{`{"commitment":"x" not json,"v":2}`, leafRaw, false},
		{`{"erasure":{not json},"v":2}`, leafRaw, false},
		{``, leafRaw, false},
	} {
		got, _ := classify([]byte(tc.leaf))
		if got != tc.want {
			t.Errorf("classify(%s) = %d, want %d", tc.leaf, got, tc.want)
		}
		if fast := fastEventLeaf([]byte(tc.leaf)); fast != tc.fast {
			t.Errorf("fastEventLeaf(%s) = %t, want %t", tc.leaf, fast, tc.fast)
		}
	}
}

// FuzzFastEventLeaf: the fast path never accepts a leaf that ParseLeaf
// refuses.
func FuzzFastEventLeaf(f *testing.F) {
	for _, ev := range []string{`{}`, `{"a":"b","c":[1,2,{"d":null}],"e":true,"f":-12}`, `{"n":123456789012345}`} {
		for _, key := range []string{"", "k"} {
			leaf, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(ev), time.Unix(1_800_000_000, 123), "s", key)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(leaf)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if fastEventLeaf(b) {
			if _, err := checkpoint.ParseLeaf(b); err != nil {
				t.Fatalf("fast path accepted %q, ParseLeaf: %v", b, err)
			}
		}
	})
}

func TestReceivedTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-25T22:31:01.504122741Z", "2024-02-29T00:00:00.000000000Z", "2000-02-29T23:59:59.999999999Z", "0000-01-01T00:00:00.000000000Z",
		"2026-02-29T00:00:00.000000000Z", "1900-02-29T00:00:00.000000000Z", "2026-13-01T00:00:00.000000000Z", "2026-04-31T00:00:00.000000000Z",
		"2026-11-25T24:00:00.000000000Z", "2026-11-25T22:60:00.000000000Z", "2026-11-25T22:31:60.000000000Z", "2026-11-25T22:31:01.50412274Z",
		"2026-11-25 22:31:01.504122741Z", "2026-00-25T22:31:01.504122741Z", "2026-11-00T22:31:01.504122741Z", "+026-11-25T22:31:01.504122741Z",
	} {
		tm, err := time.Parse(checkpoint.ReceivedFormat, s)
		want := err == nil && tm.Format(checkpoint.ReceivedFormat) == s
		if got := receivedTime([]byte(s)); got != want {
			t.Errorf("receivedTime(%s) = %t, want %t", s, got, want)
		}
	}
}

func TestScannerStrings(t *testing.T) {
	for in, want := range map[string]bool{
		`""`: true, `"abc"`: true, `"a long string of plain text"`: true, `"0123456"`: true, `"01234567"`: true, `"~ !#$%&'()*+,-./"`: true,
		`"abcdefgh\"`: false, "\"abcdefghij\x7f\"": false, "\"\x1fabcdefgh\"": false, "\"abcdefgh\x00\"": false, "\"ab\x7f\"": false,
		`"abcdéfgh"`: false, "\"abc\tdefghijk\"": false, `"unterminated`: false, `"a\"bcdefghijk`: false, "\"\x80\"": false,
	} {
		s := scanner{b: []byte(in)}
		_, ok := s.str()
		if ok != want {
			t.Errorf("str(%q) = %t", in, ok)
		}
	}
}

func TestHashChildren(t *testing.T) {
	l, r := checkpoint.LeafHash([]byte("left")), checkpoint.LeafHash([]byte("right"))
	if got, want := hashChildren(l, r), rfc6962.DefaultHasher.HashChildren(l, r); !bytes.Equal(got, want) {
		t.Fatalf("hashChildren = %x, want %x", got, want)
	}
}

func TestLess(t *testing.T) {
	for _, tc := range [][2]string{{"", "a"}, {"a", "b"}, {"a", "ab"}, {"ab", "b"}, {"A", "a"}, {"action", "actor"}} {
		if !less([]byte(tc[0]), []byte(tc[1])) || less([]byte(tc[1]), []byte(tc[0])) || less([]byte(tc[0]), []byte(tc[0])) {
			t.Errorf("less(%q, %q) wrong", tc[0], tc[1])
		}
	}
}
