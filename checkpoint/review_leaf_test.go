package checkpoint

import (
	"strings"
	"testing"
)

// A body shaped as an event leaf, with nesting deeper than encoding/json's
// limit (10000) somewhere in it, made json.Unmarshal fail, and so
// ClaimsEventLeaf say "not a leaf": /add took it as a raw entry, the
// auditor classified it raw, and a reader that parses JSON without that
// limit (a browser's JSON.parse) saw an event stamped by the log with any
// source and received time the writer chose.
func TestClaimsEventLeafWithDeepNesting(t *testing.T) {
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	for _, in := range []string{
		`{"event":{"actor":"alice"},"received":"2026-01-01T00:00:00.000000000Z","source":"prod","v":1,"x":` + deep + `}`,
		`{"event":{"actor":"alice","x":` + deep + `},"received":"2026-01-01T00:00:00.000000000Z","source":"prod","v":1}`,
		`{"x":` + deep + `,"v":1,"event":{}}`,
		`{"x":{"y":` + deep + `},"v":1,"event":{}}`,
	} {
		if len(in) > MaxLeafSize {
			t.Fatalf("the test's body is %d bytes, more than a leaf", len(in))
		}
		if !ClaimsEventLeaf([]byte(in)) {
			t.Errorf("ClaimsEventLeaf(%.80s...) = false", in)
		}
	}
	// Deep nesting alone, or "v" and "event" only inside a nested value,
	// claims nothing.
	for _, in := range []string{
		`{"x":` + deep + `}`,
		`{"x":{"v":1,"event":` + deep + `}}`,
		`{"v":1,"x":` + deep,
		`[` + deep + `,{"v":1,"event":{}}]`,
	} {
		if ClaimsEventLeaf([]byte(in)) {
			t.Errorf("ClaimsEventLeaf(%.80s...) = true", in)
		}
	}
}
