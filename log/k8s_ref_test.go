package log

// Review of issue 13's EventList reader (73a3b82): the reader as it was
// before (k8s.go and shippers.go at main), kept as the reference the
// one-pass reader must agree with on every body: which bodies it refuses
// and with which answer (status, cause, and the item it names), and, for
// the bodies it takes, the same events in the same order with the same
// keys and the same names in errors; and the count it admits must be the
// count it then splits.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func refArrayElements(b []byte, depth int, fn func(item []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return fmt.Errorf("%w: not an array", errJSONSyntax)
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for n := 1; ; n++ {
			end, err := skipValue(b, i, depth)
			if err != nil {
				return fmt.Errorf("element %d: %w", n, err)
			}
			if err := fn(b[i:end]); err != nil {
				return err
			}
			i = skipSpace(b, end)
			if i >= len(b) {
				return fmt.Errorf("%w: the array is not closed", errJSONSyntax)
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return fmt.Errorf("%w: after element %d, want ',' or ']' at byte %d", errJSONSyntax, n, i)
			}
			i = skipSpace(b, i+1)
		}
	}
	if i = skipSpace(b, i); i != len(b) {
		return fmt.Errorf("%w: data after the array at byte %d", errJSONSyntax, i)
	}
	return nil
}

func refSplitJSONArray(b []byte) ([][]byte, error) {
	var items [][]byte
	err := refArrayElements(b, maxNesting, func(item []byte) error {
		items = append(items, item)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return items, nil
}

func refCountJSONArray(b []byte) (int, error) {
	n := 0
	err := refArrayElements(b, maxNesting, func([]byte) error {
		n++
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

func refObjectMembers(b []byte, fn func(name string, value []byte) error) error {
	return refRawObjectMembers(b, maxNesting, func(name, value []byte) error {
		return fn(string(name), value)
	})
}

func refRawObjectMembers(b []byte, depth int, fn func(name, value []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return fmt.Errorf("%w: not an object", errJSONSyntax)
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return fmt.Errorf("%w: want a member name at byte %d", errJSONSyntax, i)
			}
			end, err := skipValue(b, i, depth)
			if err != nil {
				return err
			}
			name := b[i+1 : end-1]
			if bytes.IndexByte(name, '\\') >= 0 {
				var s string
				if err := json.Unmarshal(b[i:end], &s); err != nil {
					return fmt.Errorf("%w: member name at byte %d: %v", errJSONSyntax, i, err)
				}
				name = []byte(s)
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return fmt.Errorf("%w: want ':' at byte %d", errJSONSyntax, i)
			}
			i = skipSpace(b, i+1)
			end, err = skipValue(b, i, depth)
			if err != nil {
				return fmt.Errorf("member %q: %w", name, err)
			}
			if err := fn(name, b[i:end]); err != nil {
				return err
			}
			i = skipSpace(b, end)
			if i >= len(b) {
				return fmt.Errorf("%w: the object is not closed", errJSONSyntax)
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return fmt.Errorf("%w: want ',' or '}' at byte %d", errJSONSyntax, i)
			}
			i = skipSpace(b, i+1)
		}
	}
	if i = skipSpace(b, i); i != len(b) {
		return fmt.Errorf("%w: data after the object at byte %d", errJSONSyntax, i)
	}
	return nil
}

func refK8sEvents(body []byte) ([]ingestEvent, error) {
	var kind, apiVersion string
	var items [][]byte
	seen := map[string]bool{}
	err := refObjectMembers(body, func(name string, value []byte) error {
		if seen[name] {
			return fmt.Errorf("duplicate member name %q", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "kind":
			kind, err = stringMember(name, value)
		case "apiVersion":
			apiVersion, err = stringMember(name, value)
		case "items":
			if string(value) == "null" {
				return nil
			}
			items, err = refSplitJSONArray(value)
		default:
			if !json.Valid(value) {
				err = fmt.Errorf("%q: %w", name, errJSONSyntax)
			}
		}
		return err
	})
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "bad_json", "the EventList: %v", err)
	}
	if kind != "EventList" || apiVersion != k8sAPIVersion {
		return nil, errorf(http.StatusBadRequest, "bad_request", "the body is kind %q, apiVersion %q: this endpoint takes a kind \"EventList\", apiVersion %q from the kube-apiserver's audit webhook", kind, apiVersion, k8sAPIVersion)
	}
	evs := make([]ingestEvent, len(items))
	for i, item := range items {
		where := "item " + strconv.Itoa(i+1)
		auditID, stage, err := refK8sEventID(item)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "bad_request", "%s of the EventList: %v", where, err)
		}
		evs[i] = ingestEvent{raw: item, key: k8sKey(auditID, stage), where: where + " (auditID " + strconv.Quote(auditID) + ", stage " + stage + ")"}
	}
	return evs, nil
}

func refK8sItemCount(body []byte) (int, error) {
	n := 0
	err := refRawObjectMembers(body, maxNesting, func(name, value []byte) error {
		if string(name) != "items" || string(value) == "null" {
			return nil
		}
		c, err := refCountJSONArray(value)
		n += c
		return err
	})
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "bad_json", "the EventList: %v", err)
	}
	return n, nil
}

func refK8sEventID(item []byte) (auditID, stage string, err error) {
	err = refObjectMembers(item, func(name string, value []byte) error {
		var err error
		switch name {
		case "auditID":
			auditID, err = stringMember(name, value)
		case "stage":
			stage, err = stringMember(name, value)
		}
		if err == nil && auditID != "" && stage != "" {
			return errFound
		}
		return err
	})
	if err == errFound {
		err = nil
	}
	switch {
	case err != nil:
		return "", "", fmt.Errorf("not an audit event: %w", err)
	case auditID == "":
		return "", "", fmt.Errorf("no auditID: an audit.k8s.io/v1 Event has one")
	case !validStage(stage):
		return "", "", fmt.Errorf("stage %q: want a stage such as RequestReceived or ResponseComplete", stage)
	}
	return auditID, stage, nil
}

// answer is what a client is told: the status and cause of an error, and
// for an item's refusal, which item (its message up to the colon).
func answer(err error) string {
	if err == nil {
		return "ok"
	}
	var he *httpError
	if !errors.As(err, &he) {
		return "internal: " + err.Error()
	}
	a := strconv.Itoa(he.status) + " " + he.cause
	if strings.HasPrefix(he.msg, "item ") {
		a += " " + he.msg[:strings.IndexByte(he.msg, ':')]
	}
	return a
}

// checkK8sAgainstReference fails t unless the one-pass reader and the
// reference agree on body.
func checkK8sAgainstReference(t *testing.T, body []byte) {
	t.Helper()
	evs, err := k8sEvents(body)
	want, werr := refK8sEvents(body)
	if answer(err) != answer(werr) {
		t.Fatalf("k8sEvents(%.300q): %v; the reference: %v", body, err, werr)
	}
	if err == nil && werr == nil {
		if len(evs) != len(want) {
			t.Fatalf("k8sEvents(%.300q): %d events; the reference: %d", body, len(evs), len(want))
		}
		for i := range evs {
			g, w := evs[i], want[i]
			if !bytes.Equal(g.raw, w.raw) || g.key != w.key || g.explicit != w.explicit || g.name() != w.name() {
				t.Fatalf("k8sEvents(%.300q): event %d = %q key %q named %q; the reference: %q key %q named %q",
					body, i, g.raw, g.key, g.name(), w.raw, w.key, w.name())
			}
			// The bytes are the sender's own, in place: nothing copied.
			if len(g.raw) > 0 && !sameBacking(body, g.raw) {
				t.Fatalf("k8sEvents(%.300q): event %d is not a slice of the body", body, i)
			}
		}
	}
	n, cerr := k8sItemCount(body)
	wn, wcerr := refK8sItemCount(body)
	if answer(cerr) != answer(wcerr) || n != wn {
		t.Fatalf("k8sItemCount(%.300q) = %d, %v; the reference: %d, %v", body, n, cerr, wn, wcerr)
	}
	// What is admitted is what is split: a body the reader takes has
	// exactly as many events as the count admitted.
	if err == nil && (cerr != nil || n != len(evs)) {
		t.Fatalf("k8sItemCount(%.300q) = %d, %v, but k8sEvents split %d events", body, n, cerr, len(evs))
	}
}

func sameBacking(body, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	for i := 0; i+len(sub) <= len(body); i++ {
		if &body[i] == &sub[0] {
			return true
		}
	}
	return false
}

const k8sHead = `"kind":"EventList","apiVersion":"audit.k8s.io/v1"`

func k8sItem(id, stage string) string {
	return `{"auditID":"` + id + `","stage":"` + stage + `","verb":"get"}`
}

// k8sAttacks are EventLists as a hostile (or broken) sender would post
// them.
var k8sAttacks = []string{
	`{` + k8sHead + `,"items":[` + k8sItem("a", "RequestReceived") + `,` + k8sItem("b", "ResponseComplete") + `]}`,
	`{` + k8sHead + `,"items":[]}`, `{` + k8sHead + `,"items":[ ]}`, `{` + k8sHead + `,"items":null}`, `{` + k8sHead + `}`,
	`{` + k8sHead + `,"items":nul}`, `{` + k8sHead + `,"items":nullx}`, `{` + k8sHead + `,"items":{}}`, `{` + k8sHead + `,"items":"[]"}`,
	`{` + k8sHead + `,"items":0}`, `{` + k8sHead + `,"items":[}`, `{` + k8sHead + `,"items":[1,]}`, `{` + k8sHead + `,"items":[`,
	`{` + k8sHead + `,"items":`, `{` + k8sHead + `,"items": `, `{` + k8sHead + `,"items":[]`, `{` + k8sHead + `,"items":[]]}`,
	// Items that are not audit events.
	`{` + k8sHead + `,"items":[null]}`, `{` + k8sHead + `,"items":[1]}`, `{` + k8sHead + `,"items":["x"]}`, `{` + k8sHead + `,"items":[[]]}`,
	`{` + k8sHead + `,"items":[{}]}`, `{` + k8sHead + `,"items":[{"auditID":"a"}]}`, `{` + k8sHead + `,"items":[{"stage":"Panic"}]}`,
	`{` + k8sHead + `,"items":[{"auditID":1,"stage":"Panic"}]}`, `{` + k8sHead + `,"items":[{"auditID":"a","stage":null}]}`,
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"Not A Stage"}]}`, `{` + k8sHead + `,"items":[{"auditID":"","stage":"Panic"}]}`,
	`{` + k8sHead + `,"items":[` + k8sItem("a", "Panic") + `,null,` + k8sItem("b", "Panic") + `,1]}`,
	`{` + k8sHead + `,"items":[` + k8sItem("a", "Panic") + `,` + k8sItem("b", "Panic") + `,{}]}`,
	`{"items":[{}],` + k8sHead + `}`, `{"items":[{}],"kind":"Other","apiVersion":"audit.k8s.io/v1"}`,
	`{"items":[{}],` + k8sHead + `,"x":}`, `{"items":[{}],` + k8sHead + `,"x":[}`,
	// items twice, also by escape; kind twice.
	`{` + k8sHead + `,"items":[` + k8sItem("a", "Panic") + `],"items":[` + k8sItem("b", "Panic") + `]}`,
	`{` + k8sHead + `,"items":[` + k8sItem("a", "Panic") + `],"\u0069tems":[` + k8sItem("b", "Panic") + `]}`,
	`{` + k8sHead + `,"items":null,"items":[` + k8sItem("b", "Panic") + `]}`,
	`{` + k8sHead + `,"items":[` + k8sItem("a", "Panic") + `],"items":null}`,
	`{` + k8sHead + `,"items":[{}],"items":[{}]}`, `{` + k8sHead + `,"kind":"EventList","items":[]}`,
	`{"kind":"EventList","\u006bind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`,
	// Fields before and after items, the envelope in any order, escaped.
	`{"items":[` + k8sItem("a", "Panic") + `],"metadata":{"x":[1,{"y":2}]},` + k8sHead + `}`,
	`{"metadata":{},"items":[` + k8sItem("a", "Panic") + `],"kind":"EventList","apiVersion":"audit.k8s.io/v1","extra":"x"}`,
	`{"kind":"Event\u004cist","apiVersion":"audit.k8s.io\/v1","items":[` + k8sItem("a", "Panic") + `]}`,
	`{"kind":"EventList ","apiVersion":"audit.k8s.io/v1","items":[]}`, `{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}`,
	`{"kind":null,"apiVersion":"audit.k8s.io/v1","items":[]}`, `{"apiVersion":"audit.k8s.io/v1","items":[]}`,
	`{` + k8sHead + `,"metadata":{"a":1,"a":2},"items":[]}`, `{` + k8sHead + `,"metadata":[1,],"items":[]}`,
	"{" + k8sHead + ",\"metadata\":\"\xff\",\"items\":[]}",
	// White space everywhere, and trailing data.
	" \n{ \"kind\" : \"EventList\" ,\t\"apiVersion\":\"audit.k8s.io/v1\" , \"items\" : [ " + k8sItem("a", "Panic") + " , " + k8sItem("b", "Panic") + " ] } \r\n",
	`{` + k8sHead + `,"items":[]}x`, `{` + k8sHead + `,"items":[]}{}`, `{` + k8sHead + `,"items":[]},`, `{` + k8sHead + `,"items":[]`,
	`[{` + k8sHead + `,"items":[]}]`, `null`, ``, `{`, `{}`,
	// Stages and auditIDs: escaped, unusual, shared.
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"Response\u0043omplete"}]}`,
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"RequestReceived\u0000"}]}`,
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"RequestReceived\""}]}`,
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"RequestReceived","stage":"Panic"}]}`,
	`{` + k8sHead + `,"items":[{"stage":"Panic","auditID":"a\"b"}]}`, `{` + k8sHead + `,"items":[{"stage":"Panic","auditID":"\u00e9"}]}`,
	`{` + k8sHead + `,"items":[{"stage":"Panic","auditID":"sha256:abc"}]}`, `{` + k8sHead + `,"items":[{"stage":"Panic","auditID":"` + strings.Repeat("x", 200) + `"}]}`,
	"{" + k8sHead + ",\"items\":[{\"stage\":\"Panic\",\"auditID\":\"\xff\"}]}", `{` + k8sHead + `,"items":[{"stage":"panic","auditID":"a"}]}`,
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"Panic"},{"auditID":"a","stage":"Panic"}]}`,
	`{` + k8sHead + `,"items":[{"stage":"Panic","auditID":"a","x":[}]}`, `{` + k8sHead + `,"items":[{"stage":"Panic","auditID":"a","x":1,}]}`,
	// Nesting at and past the limit, inside items and in other members.
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"Panic","x":` + strings.Repeat("[", 61) + strings.Repeat("]", 61) + `}]}`,
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"Panic","x":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}]}`,
	`{` + k8sHead + `,"items":[{"auditID":"a","stage":"Panic","x":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}]}`,
	`{` + k8sHead + `,"items":[` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `]}`,
	`{` + k8sHead + `,"items":[` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `]}`,
	`{` + k8sHead + `,"items":[` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `]}`,
	`{` + k8sHead + `,"metadata":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `,"items":[]}`,
	`{` + k8sHead + `,"metadata":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `,"items":[]}`,
	`{` + k8sHead + `,"items":` + strings.Repeat("[", 100000) + `}`,
	// Strings that hide brackets and quotes.
	`{` + k8sHead + `,"items":[{"auditID":"a]},{","stage":"Panic"}]}`, `{` + k8sHead + `,"items":[{"auditID":"a\\","stage":"Panic"}]}`,
	`{` + k8sHead + `,"items":[{"auditID":"a\\\"],\"","stage":"Panic"}]}`, `{"items\"":[{}],` + k8sHead + `}`,
}

func TestK8sEventsAttacksMatchReference(t *testing.T) {
	for _, b := range k8sAttacks {
		checkK8sAgainstReference(t, []byte(b))
	}
}

// An EventList of many items, one bad item among them, anywhere: refused
// naming that item, and nothing of it logged.
func TestK8sEventsBadItemAnywhere(t *testing.T) {
	for _, bad := range []int{0, 1, 199, 399} {
		var b strings.Builder
		b.WriteString(`{` + k8sHead + `,"items":[`)
		for i := 0; i < 400; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			if i == bad {
				b.WriteString(`{"auditID":"x"}`)
				continue
			}
			b.WriteString(k8sItem("id-"+strconv.Itoa(i), "ResponseComplete"))
		}
		b.WriteString(`]}`)
		body := []byte(b.String())
		checkK8sAgainstReference(t, body)
		evs, err := k8sEvents(body)
		if evs != nil || err == nil || !strings.Contains(err.Error(), "item "+strconv.Itoa(bad+1)+" of the EventList") {
			t.Errorf("bad item %d: %d events, %v", bad+1, len(evs), err)
		}
	}
}

// The shipper array: the count admitted is the count split, and both are
// what the reader before 73a3b82 gave, for the same bodies.
func TestShipperArrayAttacksMatchReference(t *testing.T) {
	for _, b := range append([]string{
		`[]`, `[ ]`, `[{}]`, `[[{}]]`, `[[1,2],[3]]`, `[{"a":[1,[2,[3]]]}]`, `[{},]`, `[,{}]`, `[{}]x`, `[{}] `, ` [{}]`, `[{}`, `[{}]]`,
		`[null]`, `[1,"x",true]`, `[{"a":"]"}]`, `[{"a":"\"]"}]`, `["\\"]`, `[{"a":1}{"b":2}]`, `[{}` + strings.Repeat(",{}", 1000) + `]`,
		`[` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `]`, `[` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `]`,
		strings.Repeat("[", 100000),
	}, k8sAttacks...) {
		body := []byte(b)
		items, err := splitJSONArray(body)
		want, werr := refSplitJSONArray(body)
		if (err == nil) != (werr == nil) || len(items) != len(want) {
			t.Fatalf("splitJSONArray(%.200q) = %d items, %v; the reference: %d, %v", b, len(items), err, len(want), werr)
		}
		for i := range items {
			if !bytes.Equal(items[i], want[i]) {
				t.Fatalf("splitJSONArray(%.200q): item %d = %q; the reference: %q", b, i, items[i], want[i])
			}
		}
		n, cerr := countJSONArray(body)
		wn, wcerr := refCountJSONArray(body)
		if (cerr == nil) != (wcerr == nil) || n != wn || (err == nil && n != len(items)) {
			t.Fatalf("countJSONArray(%.200q) = %d, %v; the reference: %d, %v; split: %d", b, n, cerr, wn, wcerr, len(items))
		}
	}
}

func FuzzK8sEventsMatchesReference(f *testing.F) {
	for _, b := range k8sAttacks {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkK8sAgainstReference(t, body)
	})
}

// The reserved member of a truncated stand-in is refused however the sender
// spells it: the check reads the canonical event, whose bytes the one-pass
// canonicalizer must still write with the name unescaped, in place and in
// order, also when the rest of the event is passed through as it is.
func TestReservedMemberAnySpelling(t *testing.T) {
	s := &Server{}
	for _, ev := range []string{
		`{"tidemark_truncated":true}`,
		`{"a":1,"tidemark_truncated":true,"z":[1,{"b":2}]}`,
		`{"tidemark\u005ftruncated":true}`,
		`{"\u0074idemark_truncated":false}`,
		`{"tidemark_truncate\u0064":null}`,
		`{ "tidemark_truncated" : 1 }`,
		`{"z":1,"tidemark_truncated":{},"a":2}`,
		`{"tidemark_truncated":"x","id":"e-1"}`,
	} {
		for _, opts := range []appendOptions{{}, {truncate: true, notIJSON: true, keep: k8sKeep, endpoint: "k8s"}} {
			if _, err := s.buildLeaves("writer", requestEvents("", false, "", [][]byte{[]byte(ev)}), opts); err == nil || !strings.Contains(err.Error(), "reserved") {
				t.Errorf("event %s (opts %+v): %v; want it refused as reserved", ev, opts, err)
			}
		}
	}
	for _, ev := range []string{`{"a":{"tidemark_truncated":true}}`, `{"tidemark_truncated_":true}`, `{"x":"\"tidemark_truncated\":"}`} {
		if _, err := s.buildLeaves("writer", requestEvents("", false, "", [][]byte{[]byte(ev)}), appendOptions{}); err != nil {
			t.Errorf("event %s: %v; only the top-level marker is reserved", ev, err)
		}
	}
}
