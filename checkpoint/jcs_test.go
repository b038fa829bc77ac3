package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{}`, `{}`},
		{` [ ] `, `[]`},
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{`{ "a" : [ 1 , true , null , false , "x" ] }`, `{"a":[1,true,null,false,"x"]}`},
		// RFC 8785 section 3.2.2.3 numbers.
		{`[1.50, 1E2, -0, 0.0, 1e-7, 1e21, 1e20, 123456789012345678]`, ``}, // 123456789012345678 is not exact
		{`[1.50, 1E2, -0, 0.0, 1e-7, 1e21, 1e20, 4.5, 0.000001, 2e-6]`, `[1.5,100,0,0,1e-7,1e+21,100000000000000000000,4.5,0.000001,0.000002]`},
		{`[333333333.3333333, 1E30, 4.50, 2e-3, 0.000000000000000000000000001]`, `[333333333.3333333,1e+30,4.5,0.002,1e-27]`},
		{`[9007199254740991, -9007199254740991]`, `[9007199254740991,-9007199254740991]`},
		// Strings: minimal escaping, \u00xx lower case, raw UTF-8 kept.
		{`"\u20ac\/\u000f\n\"\\\u00e9"`, "\"€/\\u000f\\n\\\"\\\\é\""},
		{`"\ud83d\ude00"`, "\"😀\""},
		{"\"\u2028\"", "\"\u2028\""},
		// RFC 8785 section 3.2.3 sorting by UTF-16 code units.
		{`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
	} {
		got, err := Canonicalize([]byte(tc.in))
		if tc.want == "" {
			if err == nil {
				t.Errorf("Canonicalize(%s) = %s, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("Canonicalize(%s): %v", tc.in, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("Canonicalize(%s)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalizeRefusesNonIJSON(t *testing.T) {
	for _, in := range []string{
		``, ` `, `{`, `}`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `'a'`, `01`, `-`, `1.`, `.5`, `1e`, `+1`,
		`NaN`, `Infinity`, `tru`, `nul`, `{"a":1}{}`, `{"a":1} x`, `"a`, `"\x"`, `"\u12"`, "\"\x01\"",
		`{"a":1,"a":2}`,             // duplicate names
		`{"a":1,"\u0061":2}`,        // duplicate after unescaping
		`9007199254740993`,          // not exact in a double
		`3.14159265358979323846`,    // more precision than a double
		`1e400`, `-1e400`, `1e-400`, // out of range
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, // lone surrogates
		"\"\xff\"", "{\"\xc3\x28\":1}", // invalid UTF-8
		strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1),
	} {
		if got, err := Canonicalize([]byte(in)); err == nil {
			t.Errorf("Canonicalize(%q) = %s, want an error", in, got)
		} else if !errors.Is(err, ErrNotIJSON) {
			t.Errorf("Canonicalize(%q): error %v does not wrap ErrNotIJSON", in, err)
		}
	}
	deep := strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)
	if _, err := Canonicalize([]byte(deep)); err != nil {
		t.Errorf("nesting of exactly %d refused: %v", MaxJSONDepth, err)
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"b":[1,2.5,"x"],"a":{"c":null}}`, `"\u00e9\ud83d\ude00"`, `1e21`, `-0.0`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Canonicalize(in)
		if err != nil {
			return
		}
		// Canonical output is canonical.
		c2, err := Canonicalize(c)
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("Canonicalize not idempotent: %q -> %q -> %q, %v", in, c, c2, err)
		}
		// It denotes the same value as the input, as encoding/json reads it.
		var a, b any
		if json.Unmarshal(in, &a) != nil || json.Unmarshal(c, &b) != nil {
			t.Fatalf("encoding/json refuses accepted input %q or its canonical form %q", in, c)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("canonical form changes the value: %q -> %q", in, c)
		}
	})
}

func TestCanonicalEvent(t *testing.T) {
	ev, err := CanonicalEvent([]byte(` {"id":"abc-1", "action":"secret.read"} `))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(ev.Canonical), `{"action":"secret.read","id":"abc-1"}`; got != want {
		t.Errorf("Canonical = %s, want %s", got, want)
	}
	if ev.ID != (EventID{Value: "abc-1"}) || ev.ID.Key() != "s:abc-1" {
		t.Errorf("ID = %+v, want the string abc-1", ev.ID)
	}
	// A number and a string with the same text are different ids.
	if ev, _ := CanonicalEvent([]byte(`{"id":12}`)); ev.ID != (EventID{Value: "12", Number: true}) || ev.ID.Key() != "n:12" {
		t.Errorf("numeric ID = %+v, want the number 12", ev.ID)
	}
	if ev, _ := CanonicalEvent([]byte(`{"id":1.20e1}`)); ev.ID.Key() != "n:12" {
		t.Errorf("numeric ID 1.20e1 = %+v, want its canonical text 12", ev.ID)
	}
	if ev, _ := CanonicalEvent([]byte(`{"id":"12"}`)); ev.ID.Key() != "s:12" {
		t.Errorf("string ID \"12\" = %+v, want s:12", ev.ID)
	}
	for _, in := range []string{`{"id":{"x":1}}`, `{"id":""}`, `{"id":null}`, `{"id":true}`, `{}`} {
		if ev, _ := CanonicalEvent([]byte(in)); !ev.ID.IsZero() || ev.ID.Key() != "" {
			t.Errorf("%s: ID = %+v, want none", in, ev.ID)
		}
	}
	for _, in := range []string{`[]`, `"x"`, `1`, `null`} {
		if _, err := CanonicalEvent([]byte(in)); !errors.Is(err, ErrNotObject) {
			t.Errorf("CanonicalEvent(%s) = %v, want ErrNotObject", in, err)
		}
	}
	if _, err := CanonicalEvent([]byte(`{"a":1,"a":1}`)); !errors.Is(err, ErrNotIJSON) {
		t.Errorf("duplicate names: %v, want ErrNotIJSON", err)
	}
}

func TestLeafRoundTrip(t *testing.T) {
	ev, err := CanonicalEvent([]byte(`{"action":"deploy","actor":"ci"}`))
	if err != nil {
		t.Fatal(err)
	}
	received := time.Date(2026, 11, 25, 22, 0, 1, 5, time.UTC)
	l := Leaf{Received: received, Source: "ci-bot", IdempotencyKey: "k\"1", Event: ev.Canonical}
	b := AppendLeaf(nil, l)
	want := `{"event":{"action":"deploy","actor":"ci"},"idempotency_key":"k\"1","received":"2026-11-25T22:00:01.000000005Z","source":"ci-bot","v":1}`
	if string(b) != want {
		t.Fatalf("AppendLeaf = %s\nwant %s", b, want)
	}
	if c, err := Canonicalize(b); err != nil || !bytes.Equal(c, b) {
		t.Fatalf("leaf is not canonical JSON: %s, %v", c, err)
	}
	got, err := ParseLeaf(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Received.Equal(received) || got.Source != l.Source || got.IdempotencyKey != l.IdempotencyKey || !bytes.Equal(got.Event, l.Event) {
		t.Errorf("ParseLeaf = %+v, want %+v", got, l)
	}
	direct, id, evLen, err := AppendEventLeaf([]byte("prefix"), []byte(` {"actor":"ci", "action":"deploy"}`), received, "ci-bot", "k\"1")
	if err != nil || string(direct) != "prefix"+want || !id.IsZero() || evLen != len(ev.Canonical) {
		t.Errorf("AppendEventLeaf = %s, %+v, %d, %v; want prefix%s", direct, id, evLen, err, want)
	}
	if _, _, _, err := AppendEventLeaf(nil, []byte(`[1]`), received, "s", ""); !errors.Is(err, ErrNotObject) {
		t.Errorf("AppendEventLeaf of an array: %v", err)
	}
	if n := len(b) - len(ev.Canonical); LeafOverhead("ci-bot", "k\"1") != n {
		t.Errorf("LeafOverhead = %d, want %d", LeafOverhead("ci-bot", "k\"1"), n)
	}
	if !ClaimsEventLeaf(b) {
		t.Error("ClaimsEventLeaf(leaf) = false")
	}

	// Without a key the member is absent.
	l.IdempotencyKey = ""
	if b := AppendLeaf(nil, l); bytes.Contains(b, []byte("idempotency_key")) {
		t.Errorf("leaf without a key has the member: %s", b)
	}
}

func TestParseLeafRefuses(t *testing.T) {
	for _, in := range []string{
		`{"event":{},"received":"2026-11-25T22:00:01.000000005Z","source":"a","v":2}`,
		`{"event":[],"received":"2026-11-25T22:00:01.000000005Z","source":"a","v":1}`,
		`{"event":{},"received":"2026-11-25T22:00:01Z","source":"a","v":1}`,
		`{"event":{},"received":"2026-11-25T23:00:01.000000005+01:00","source":"a","v":1}`,
		`{"event":{},"received":"2026-11-25T22:00:01.000000005Z","source":1,"v":1}`,
		`{"event":{},"received":"2026-11-25T22:00:01.000000005Z","v":1}`,
		`{"event":{},"extra":1,"received":"2026-11-25T22:00:01.000000005Z","source":"a","v":1}`,
		`{"event":{},"idempotency_key":"","received":"2026-11-25T22:00:01.000000005Z","source":"a","v":1}`,
		`{"received":"2026-11-25T22:00:01.000000005Z","event":{},"source":"a","v":1}`, // not sorted
		`{"event":{"b":1,"a":2},"received":"2026-11-25T22:00:01.000000005Z","source":"a","v":1}`,
		`{"event":{}, "received":"2026-11-25T22:00:01.000000005Z","source":"a","v":1}`, // white space
		`{"event":{},"received":"2026-11-25T22:00:01.000000005Z","source":"a","v":1}` + "\n",
		`{"event":{},"received":"2026-11-25T22:00:01.000000005Z","source":"\u0061","v":1}`,
	} {
		if _, err := ParseLeaf([]byte(in)); !errors.Is(err, ErrLeaf) {
			t.Errorf("ParseLeaf(%s) = %v, want ErrLeaf", in, err)
		}
	}
}

func TestClaimsEventLeaf(t *testing.T) {
	for in, want := range map[string]bool{
		`{"v":1,"event":{}}`:         true,
		` {"event":1,"v":"x","a":2}`: true,
		`{"v":1}`:                    false,
		`{"event":{}}`:               false,
		`hello`:                      false,
		`["v","event"]`:              false,
		`{"v":1,"event":{}`:          false,
		`{"v":1,"\u0065vent":{}}`:    true,
		`{"v":1,"ev\u0065nt":{}}`:    true,
	} {
		if got := ClaimsEventLeaf([]byte(in)); got != want {
			t.Errorf("ClaimsEventLeaf(%s) = %v, want %v", in, got, want)
		}
	}
}

func FuzzParseLeaf(f *testing.F) {
	f.Add([]byte(`{"event":{"a":1},"idempotency_key":"k","received":"2026-11-25T22:00:01.000000005Z","source":"a","v":1}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		l, err := ParseLeaf(in)
		if err != nil {
			return
		}
		if out := AppendLeaf(nil, l); !bytes.Equal(out, in) {
			t.Fatalf("ParseLeaf accepted %q but it formats as %q", in, out)
		}
		if !ClaimsEventLeaf(in) {
			t.Fatalf("accepted leaf %q does not claim to be one", in)
		}
	})
}
