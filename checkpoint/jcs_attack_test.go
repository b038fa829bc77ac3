package checkpoint

// Review of issue 13's canonicalizer (e3c09d3), attacking it as a sender
// would: every input below must get from Canonicalize and from
// appendCanonicalEvent exactly what the reference (the canonicalizer it
// replaced, jcs_ref_test.go) gives it, the same bytes, the same id and the
// same kind of error, and, where the RFCs say what the answer is, that
// answer.

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// errClass names the kind of error, for comparing the two canonicalizers'
// refusals (their messages differ in wording and in byte offsets).
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotObject):
		return "not-object"
	case errors.Is(err, ErrNotIJSON):
		return "not-ijson"
	}
	return "other: " + err.Error()
}

// checkAgainstReference fails t unless the canonicalizer and the reference
// agree on in, in every way a caller can see.
func checkAgainstReference(t *testing.T, in []byte) {
	t.Helper()
	got, err := Canonicalize(in)
	want, werr := refCanonicalize(in)
	if errClass(err) != errClass(werr) || !bytes.Equal(got, want) {
		t.Errorf("Canonicalize(%.200q) = %.200q, %v; the reference: %.200q, %v", in, got, err, want, werr)
	}
	// Appending to a buffer that already holds something, as the log does.
	pre := []byte("leaf-prefix:")
	got, err = AppendCanonical(bytes.Clone(pre), in)
	want, werr = refAppendCanonical(bytes.Clone(pre), in)
	if errClass(err) != errClass(werr) || !bytes.Equal(got, want) {
		t.Errorf("AppendCanonical(%.200q) = %.200q, %v; the reference: %.200q, %v", in, got, err, want, werr)
	}
	got, id, err := appendCanonicalEvent(bytes.Clone(pre), in)
	want, wid, werr := refAppendCanonicalEvent(bytes.Clone(pre), in)
	if errClass(err) != errClass(werr) || !bytes.Equal(got, want) || id != wid {
		t.Errorf("appendCanonicalEvent(%.200q) = %.200q, %+v, %v; the reference: %.200q, %+v, %v", in, got, id, err, want, wid, werr)
	}
}

// attackInputs are what a hostile sender would try on a canonicalizer that
// passes input it believes canonical through as it is.
var attackInputs = []string{
	// Strings that look canonical (no backslash) but are not valid.
	"\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xf0\x80\x80\xaf\"", // overlong '/'
	"\"\xed\xa0\x80\"", "\"\xed\xbf\xbf\"", // UTF-8-encoded surrogates
	"\"\xf4\x90\x80\x80\"", "\"\xf8\x88\x80\x80\x80\"", // beyond U+10FFFF
	"\"\xc3\"", "\"\xc3", "\"a\xc3\"", "\"\xe2\x82\"", "\"\x80\"", "\"\xbf\"", "\"\xfe\"", "\"\xff\xfe\"",
	"\"abcdefg\xff\"", "\"abcdefgh\xff\"", "\"abcdefghijklmno\xc3\"", // the bad byte in/after an 8-byte word
	"\"\x00\"", "\"\x1f\"", "\"abcdefg\x0a\"", "\"abcdefghijklmnop\x09\"", "\"a\tb\"",
	"\"\x7f\"", "\"\xe2\x80\xa8\xe2\x80\xa9\"", "\"\xef\xbf\xbd\"", "\"\xef\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"",
	// Escapes, valid and not.
	`"\u0000"`, `"\u001f"`, `"\u007f"`, `"\u2028"`, `"\u00e9"`, `"\/"`, `"\b\f\n\r\t"`, `"\""`, `"\\"`,
	`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud800\ud800"`, `"\udbff\udfff"`, `"\ud83d\ude00"`, `"\uD83D\uDE00"`,
	`"\ud800x"`, `"\ud800\"`, `"\ud800\u"`, `"\ud800\udc0"`, `"\u12"`, `"\u12g4"`, `"\x41"`, `"\'"`, `"\a"`, `"\U0041"`,
	`"\u0022"`, `"\u005c"`, `"\u005C\u0022"`, "\"\\\xff\"", "\"\xc3\\u00a9\"", "\"\\u00c3\xa9\"", "\"a\\n\xed\xa0\x80\"",
	`"abc\`, `"abc\"`, `"\`, `"`, `"abcdefghijklmnopqrstuvwxyz`,
	// Numbers.
	`0`, `-0`, `-0.0`, `0.0`, `0e0`, `-0e-0`, `0E+5`, `1E2`, `1e2`, `1e+2`, `100`, `1.0`, `1.50`, `0.1`, `0.10000000000000001`,
	`0.1000000000000000055511151231257827`, `0.30000000000000004`, `1e400`, `-1e400`, `1e-400`, `4.9e-324`, `5e-324`, `2e-324`,
	`1.7976931348623157e308`, `1.7976931348623159e308`, `9007199254740992`, `9007199254740993`, `-9007199254740993`,
	`999999999999999`, `9999999999999999`, `-99999999999999`, `-999999999999999`, `123456789012345`, `1234567890123456`,
	`1e21`, `1e20`, `100000000000000000000`, `1000000000000000000000`, `1e-6`, `1e-7`, `0.000001`, `0.0000001`,
	`01`, `-01`, `00`, `-`, `--1`, `+1`, `.5`, `-.5`, `5.`, `1.e2`, `1e`, `1e+`, `1e-`, `0x10`, `Infinity`, `-Infinity`, `NaN`,
	`1e99999999999999999999`, `1e-99999999999999999999`, `0e99999999999999999999`, `0.` + strings.Repeat("0", 400) + `1e400`,
	`1` + strings.Repeat("0", 400), `1` + strings.Repeat("0", 400) + `e-400`, `1.` + strings.Repeat("0", 1000),
	// Literals.
	`true`, `false`, `null`, `tru`, `nul`, `nulll`, `True`, `NULL`, `truefalse`, `[true,false,null]`,
	// White space and what is not white space.
	" {}", "{} ", "\t\r\n{}\n", "\v{}", "\f{}", "\u00a0{}", "\xef\xbb\xbf{}", `{ "a" : 1 , "b" : [ 1 , 2 ] }`, "[1,\n2]", "[ ]", "{ }", "[\n]",
	// Trailing garbage after the top-level value.
	`{}x`, `{}{}`, `{} {}`, `[]]`, `{}}`, `1 2`, `"a""b"`, `"a" x`, `{"a":1}` + "\x00", `null,`, `0-`, `1.5.5`,
	// Duplicate names, also by escape and in other orders.
	`{"a":1,"a":1}`, `{"a":1,"\u0061":1}`, `{"\u0061":1,"a":2}`, `{"b":1,"a":1,"b":1}`, `{"a":1,"b":2,"c":3,"a":4}`,
	`{"é":1,"\u00e9":2}`, `{"😀":1,"\ud83d\ude00":2}`, `{"a\/b":1,"a/b":2}`, `{"":1,"":2}`, `{"":1}`,
	`{"a":{"x":1,"x":2}}`, `[{"x":1},{"x":1}]`, `{"a":1,"b":{"a":1}}`,
	// Names in UTF-16 order, not byte order: an astral character (its
	// UTF-16 starts with a high surrogate, D800..DBFF) sorts before BMP
	// characters from U+E000 up, while its UTF-8 sorts after them.
	`{"😀":1,"דּ":2}`, `{"דּ":1,"😀":2}`, `{"\ue000":1,"\ud800\udc00":2}`, `{"\uffff":1,"\ud83d\ude00":2,"\ud7ff":3}`,
	`{"a😀":1,"aדּ":2,"a":3,"ab":4}`, `{"€":1,"😀":2,"דּ":3,"a":4,"\u0080":5,"\u007f":6}`,
	// Canonical objects and arrays, passed through as they are.
	`{"a":1,"b":"x","c":[1,"y",{"d":null}],"e":{}}`, `{"a":[],"b":{},"c":[[]],"d":[{}]}`, `{"a":{"b":{"c":{}}}}`,
	// Canonical but for one thing deep inside.
	`{"a":[1,"y",{"d":nul}]}`, `{"a":[1,"y",{"d":-0}]}`, `{"a":[1,"y",{"d":1E2}]}`, `{"a":[1,"y",{"e":1,"d":2}]}`,
	`{"a":[1,"y",{"d":"\u0041"}]}`, `{"a":[1,"y",{"d":2 }]}`, `{"a":[1,"y" ,{"d":2}]}`, `{"a":[1,"y",{"d":"\ud800"}]}`,
	"{\"a\":[1,\"y\",{\"d\":\"\xed\xa0\x80\"}]}", "{\"a\":[1,\"y\",{\"\xff\":1}]}", `{"a":[1,"y",{"d":1,"d":2}]}`,
	// Structure errors.
	`{`, `}`, `[`, `]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `[1,]`, `[,1]`, `[1 2]`, `{"a":1 "b":2}`, `{"a" 1}`, `{a:1}`,
	`{'a':1}`, `{"a":1]`, `[1}`, `{"a":[}`, `{1:1}`, `{null:1}`, `{"a":1,"b"}`, `{"a"::1}`, ``, ` `, `"`, `[[]`, `[]]`,
	// Events: the id in all its forms, and what is not an event.
	`{"id":"x"}`, `{"id":"\u0078"}`, `{"id":"a\"b"}`, `{"id":"\ud83d\ude00"}`, `{"id":-0}`, `{"id":1E2}`, `{"id":1.50}`,
	`{"id":123456789012345}`, `{"id":1234567890123456}`, `{"id":9007199254740993}`, `{"id":null}`, `{"id":true}`, `{"id":[1]}`,
	`{"id":{"id":"x"}}`, `{"\u0069d":"x"}`, `{"id":"x","\u0069d":"y"}`, `{"id ":"x"}`, `{"ID":"x"}`, `{"z":1,"id":"x","a":2}`,
	"{\"id\":\"\x7f\"}", "{\"id\":\"\xe2\x80\xa8\"}", "{\"id\":\"\xff\"}", `[]`, `[{}]`, `"x"`, `1`, `null`, ` [`, ` "`, `  `,
}

func TestCanonicalizeAttacksMatchReference(t *testing.T) {
	for _, in := range attackInputs {
		checkAgainstReference(t, []byte(in))
	}
}

// What RFC 8785 and RFC 7493 say the answers are, whatever either
// implementation does.
func TestCanonicalizeAttacksRFC(t *testing.T) {
	accept := map[string]string{
		`-0`:                            `0`,
		`-0.0`:                          `0`,
		`0E+5`:                          `0`,
		`1E2`:                           `100`,
		`1e+2`:                          `100`,
		`1.50`:                          `1.5`,
		`0.0000001`:                     `1e-7`,
		`1e21`:                          `1e+21`,
		`100000000000000000000`:         `100000000000000000000`,
		`1000000000000000000000`:        `1e+21`,
		`0.30000000000000004`:           `0.30000000000000004`,
		`9007199254740992`:              `9007199254740992`,
		`5e-324`:                        `5e-324`,
		`1.7976931348623157e308`:        `1.7976931348623157e+308`,
		`"\u0000"`:                      `"\u0000"`,
		`"\u001f"`:                      `"\u001f"`,
		`"\u007f"`:                      "\"\x7f\"",
		`"\u2028"`:                      "\"\xe2\x80\xa8\"",
		`"\/"`:                          `"/"`,
		`"\b\f\n\r\t"`:                  `"\b\f\n\r\t"`,
		`"\u005C\u0022"`:                `"\\\""`,
		`"\uD83D\uDE00"`:                `"😀"`,
		"\"\xef\xbf\xbf\"":              "\"\xef\xbf\xbf\"",
		`{"דּ":1,"😀":2}`:                 `{"😀":2,"דּ":1}`,
		`{"\ue000":1,"\ud800\udc00":2}`: "{\"\xf0\x90\x80\x80\":2,\"\xee\x80\x80\":1}",
		`{"€":1,"😀":2,"דּ":3,"a":4,"\u0080":5,"\u007f":6}`: "{\"a\":4,\"\x7f\":6,\"\u0080\":5,\"€\":1,\"😀\":2,\"דּ\":3}",
		`{ "a" : 1 , "b" : [ 1 , 2 ] }`:                   `{"a":1,"b":[1,2]}`,
		`{"":1}`:                                          `{"":1}`,
	}
	for in, want := range accept {
		got, err := Canonicalize([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("Canonicalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	refuse := []string{
		"\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\x00\"", "\"\x1f\"", "\"a\tb\"",
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud800x"`, `"\x41"`, `"\'"`,
		`1e400`, `-1e400`, `9007199254740993`, `0.10000000000000001`, `1e-400`, `2e-324`, `1.7976931348623159e308`,
		`01`, `-`, `+1`, `.5`, `5.`, `1e`, `NaN`, `Infinity`,
		`{"a":1,"\u0061":2}`, `{"é":1,"\u00e9":2}`, `{"😀":1,"\ud83d\ude00":2}`, `{"a\/b":1,"a/b":2}`, `{"":1,"":2}`,
		`{}x`, `1 2`, "\v{}", "\xef\xbb\xbf{}", `[1,]`,
		strings.Repeat(`[`, MaxJSONDepth+1) + strings.Repeat(`]`, MaxJSONDepth+1),
		strings.Repeat(`{"a":`, MaxJSONDepth+1) + `1` + strings.Repeat(`}`, MaxJSONDepth+1),
	}
	for _, in := range refuse {
		if got, err := Canonicalize([]byte(in)); !errors.Is(err, ErrNotIJSON) {
			t.Errorf("Canonicalize(%q) = %q, %v; want it refused as not I-JSON", in, got, err)
		}
	}
}

// Nesting at the limit is taken, one more is refused, in every mix of
// objects and arrays, canonical or not.
func TestCanonicalizeNestingLimit(t *testing.T) {
	for _, d := range []int{MaxJSONDepth - 1, MaxJSONDepth, MaxJSONDepth + 1, 2 * MaxJSONDepth, 10000} {
		for _, mk := range []func(int) string{
			func(d int) string { return strings.Repeat(`[`, d) + strings.Repeat(`]`, d) },
			func(d int) string { return strings.Repeat(`[ `, d) + strings.Repeat(`]`, d) },
			func(d int) string { return strings.Repeat(`{"a":`, d-1) + `{}` + strings.Repeat(`}`, d-1) },
			func(d int) string { return strings.Repeat(`{"b":1,"a":`, d-1) + `{}` + strings.Repeat(`}`, d-1) },
			func(d int) string { return strings.Repeat(`[{"a":`, d/2) + `[]` + strings.Repeat(`}]`, d/2) },
			func(d int) string { return strings.Repeat(`{"a":[`, d/2) + `1` + strings.Repeat(`]}`, d/2) },
		} {
			in := mk(d)
			checkAgainstReference(t, []byte(in))
		}
	}
}

// The parser is pooled and keeps scratch per depth: one input must not
// change what the next one gets, in any order, also when a deeper input
// than any before grows the scratch while an object is open.
func TestCanonicalizeScratchReuse(t *testing.T) {
	deep := strings.Repeat(`{"b":1,"a":`, 40) + `{"z":[1,{"y":2,"x":1}],"c":"\u0041"}` + strings.Repeat(`}`, 40)
	inputs := []string{
		`{"b":{"d":1,"c":2},"a":{"f":1,"e":2}}`,
		deep,
		`{"z":1,"y":{"q":1,"p":[{"n":1,"m":2},{"l":1,"k":2}]},"x":{"j":1,"i":2}}`,
		`{"a":1,"a":2}`,
		`{"b":{"d":1,"c":2,"c":3},"a":1}`,
		`{"b":{"d":1,"c":2},"a":{"f":1,"e":2}}`,
		deep,
		`[{"b":1,"a":2},{"d":1,"c":2},{"b":1,"a":2}]`,
	}
	for round := 0; round < 3; round++ {
		for _, in := range inputs {
			checkAgainstReference(t, []byte(in))
		}
		for i := len(inputs) - 1; i >= 0; i-- {
			checkAgainstReference(t, []byte(inputs[i]))
		}
	}
	// A fresh parser whose scratch grows, depth by depth, in the middle of
	// unsorted objects at every level.
	for d := 2; d <= MaxJSONDepth; d++ {
		in := strings.Repeat(`{"b":1,"a":`, d-1) + `{"d":[1,{"f":1,"e":2}],"c":2}` + strings.Repeat(`}`, d-1)
		p := new(jsonParser)
		p.in = []byte(in)
		got, raw, err := p.value(nil, 0)
		got = append(got, raw...)
		want, werr := refCanonicalize([]byte(in))
		if errClass(err) != errClass(werr) || !bytes.Equal(got, want) {
			t.Fatalf("depth %d: %q, %v; the reference: %q, %v", d, got, err, want, werr)
		}
	}
}

// Long strings and many members, canonical or not, escaped or not: the
// results match, and the time stays linear.
func TestCanonicalizeHugeValues(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	for _, in := range []string{
		`"` + big + `"`,
		`"` + big + `\u0041"`,
		`"\u0041` + big + `"`,
		`"` + big + "\xff\"",
		`"` + big,
		`{"` + big + `":1,"` + big + `":2}`,
		`{"` + big + `a":1,"` + big + `":2}`,
		`[` + strings.Repeat(`1,`, 200000) + `1]`,
		`[` + strings.Repeat(`"a",`, 200000) + `1 ]`,
		`{` + manyMembers(50000, false) + `}`,
		`{` + manyMembers(50000, true) + `}`,
		`{` + manyMembers(50000, true) + `,"m00000":1}`,
	} {
		checkAgainstReference(t, []byte(in))
	}
}

func manyMembers(n int, reversed bool) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		k := i
		if reversed {
			k = n - 1 - i
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"m`)
		b.WriteString(strings.Repeat("0", 5-len(itoa(k))))
		b.WriteString(itoa(k))
		b.WriteString(`":1`)
	}
	return b.String()
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// BenchmarkCanonicalizeNested compares the one-pass canonicalizer with
// the reference on the deepest shapes around a 4 MiB string: a nested
// array is copied at every level and then dropped, so arrays are its worst
// shape, and the reference's worst (nested objects) bounds what a sender
// could already cost. A benchmark, not a test: timings here are noisy.
//
//	go test -run - -bench CanonicalizeNested ./checkpoint
func BenchmarkCanonicalizeNested(b *testing.B) {
	big := `"` + strings.Repeat("x", 4<<20) + `"`
	shapes := []struct{ name, in string }{
		{"arrays", strings.Repeat(`[`, MaxJSONDepth-1) + big + strings.Repeat(`]`, MaxJSONDepth-1)},
		{"objects", strings.Repeat(`{"a":`, MaxJSONDepth-1) + big + strings.Repeat(`}`, MaxJSONDepth-1)},
		{"objects-sorted", strings.Repeat(`{"b":1,"a":`, MaxJSONDepth-1) + big + strings.Repeat(`}`, MaxJSONDepth-1)},
		{"arrays-in-space", strings.Repeat(`[ `, MaxJSONDepth-1) + big + strings.Repeat(`]`, MaxJSONDepth-1)},
	}
	for _, sh := range shapes {
		for _, impl := range []struct {
			name string
			f    func([]byte) ([]byte, error)
		}{{"onepass", Canonicalize}, {"reference", refCanonicalize}} {
			b.Run(sh.name+"/"+impl.name, func(b *testing.B) {
				in := []byte(sh.in)
				b.SetBytes(int64(len(in)))
				for b.Loop() {
					if _, err := impl.f(in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// stringValue's fast path (no backslash) answers what encoding/json
// answers, for every string an attacker might put in a leaf or an id.
func TestStringValueAttacks(t *testing.T) {
	extra := []string{`"a"b"`, `"a"`, `""`, `"`, `"\"`, "\"a\x00\"", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"\xef\xbb\xbf\"", `"a" `, ` "a"`}
	for _, v := range append(extra, attackInputs...) {
		got, err := stringValue([]byte(v))
		want, werr := refStringValue([]byte(v))
		if got != want || (err == nil) != (werr == nil) {
			t.Errorf("stringValue(%q) = %q, %v; encoding/json: %q, %v", v, got, err, want, werr)
		}
	}
}
