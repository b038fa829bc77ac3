package log

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
)

// The fixtures in testdata/shippers are request bodies of the log shippers'
// HTTP outputs, with the Content-Type each sends:
//
//	syslog-ng.ndjson              syslog-ng 3.38 http(), deploy/examples/syslog-ng/tidemark.conf (captured)
//	fluent-bit-json.json          Fluent Bit http output, format json, json_date_format iso8601
//	fluent-bit-json-double.json   the same with the default json_date_format double
//	fluent-bit-json-lines.ndjson  Fluent Bit http output, format json_lines
//	vector-ndjson.ndjson          Vector http sink, codec json, framing newline_delimited
//	vector-array.json             Vector http sink, codec json, default framing (a JSON array)
func TestShipperBodiesAreOneLeafPerEvent(t *testing.T) {
	for _, tc := range []struct {
		file, ctype string
		events      int
	}{
		{"syslog-ng.ndjson", "application/x-ndjson", 2},
		{"fluent-bit-json.json", "application/json", 2},
		{"fluent-bit-json-double.json", "application/json", 2},
		{"fluent-bit-json-lines.ndjson", "application/x-ndjson", 2},
		{"vector-ndjson.ndjson", "application/x-ndjson", 3},
		{"vector-array.json", "application/json", 3},
	} {
		for _, gz := range []bool{false, true} {
			name := tc.file
			if gz {
				name += "+gzip"
			}
			t.Run(name, func(t *testing.T) {
				tl := newK8sTestLog(t)
				body := readFixture(t, "shippers/"+tc.file)
				header := []string{"Authorization", "Bearer " + k8sToken}
				sent := body
				if gz {
					var buf bytes.Buffer
					zw := gzip.NewWriter(&buf)
					zw.Write(body)
					zw.Close()
					sent = buf.Bytes()
					header = append(header, "Content-Encoding", "gzip")
				}
				r := tl.post("/v1/events", tc.ctype, sent, header...)
				if r.status != http.StatusOK {
					t.Fatalf("%d %s", r.status, r.body)
				}
				var res struct{ Results []eventResult }
				if err := json.Unmarshal(r.body, &res); err != nil || len(res.Results) != tc.events {
					t.Fatalf("answer %s: want %d results", r.body, tc.events)
				}
				var want [][]byte
				if tc.ctype == "application/json" {
					want, _ = splitJSONArray(body)
				} else {
					want = splitLines(body)
				}
				leaves := tl.leaves()
				for i, raw := range want {
					l, err := checkpoint.ParseLeaf(leaves[res.Results[i].Index])
					if err != nil {
						t.Fatal(err)
					}
					c, err := checkpoint.CanonicalEvent(raw)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(l.Event, c.Canonical) || l.Source != "kube-apiserver" {
						t.Errorf("event %d: %s from %q, want %s", i, l.Event, l.Source, c.Canonical)
					}
				}
			})
		}
	}
}

func TestJSONArrayOnEvents(t *testing.T) {
	tl := newTestLog(t, nil)
	// An array is a batch: answered like NDJSON, keys K/n with a header.
	r := tl.post("/v1/events", "application/json", []byte(` [ {"a":1} , {"id":"x"} ] `), "Idempotency-Key", "arr")
	if r.status != 200 || string(bytes.TrimSpace(r.body)) != `{"results":[{"index":0},{"index":1}]}` {
		t.Fatalf("array: %d %s", r.status, r.body)
	}
	r = tl.post("/v1/events", "application/json", []byte(`[{"a":1},{"id":"x"}]`), "Idempotency-Key", "arr")
	if string(bytes.TrimSpace(r.body)) != `{"results":[{"index":0,"duplicate":true},{"index":1,"duplicate":true}]}` {
		t.Errorf("retried array: %d %s", r.status, r.body)
	}
	l, _ := checkpoint.ParseLeaf(tl.leaves()[1])
	if l.IdempotencyKey != "arr/1" {
		t.Errorf("key %q, want arr/1", l.IdempotencyKey)
	}
	// A single object is still one event.
	if res := tl.postEvent(`{"single":true}`); res.Index != 2 {
		t.Errorf("single event: %+v", res)
	}
	for _, tc := range []struct{ body, want string }{
		{`[]`, "no events"},
		{`[{"a":1},]`, "JSON array"},
		{`[{"a":1}`, "not closed"},
		{`[{"a":1}] {"b":2}`, "after the array"},
		{`[{"a":1},{"a":2,"a":3}]`, "item 2: not I-JSON: duplicate member name"},
		{`[{"a":1},[1]]`, "item 2: an event must be a JSON object"},
		{`[{"a":1},"x"]`, "item 2"},
		{`[{"a":"` + strings.Repeat("a", 70_000) + `"}]`, "item 1 is 70008 bytes"},
		{`[{"tidemark_truncated":false}]`, "reserved"},
		// Fluent Bit's json_stream: objects one after the other.
		{`{"a":1}{"b":2}`, "I-JSON"},
	} {
		r := tl.post("/v1/events", "application/json", []byte(tc.body))
		var e struct{ Error string }
		json.Unmarshal(r.body, &e)
		if r.status/100 != 4 || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%.40s: %d %s, want an error mentioning %q", tc.body, r.status, r.body, tc.want)
		}
	}
	if n := tl.size(); n != 3 {
		t.Errorf("tree size %d, want 3", n)
	}
}

func TestSplitJSONArray(t *testing.T) {
	got, err := splitJSONArray([]byte("\n[\"a,]\\\"\" , {\"b\":[1,{\"c\":\"}\"}]},true,null , -1.5e3 ]\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`"a,]\""`, `{"b":[1,{"c":"}"}]}`, `true`, `null`, `-1.5e3`}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("element %d = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{``, `[`, `[1,`, `[1 2]`, `[{]`, `[{"a":1]}`, `["x]`, `[1]]`, `[` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `]`} {
		if _, err := splitJSONArray([]byte(bad)); err == nil {
			t.Errorf("splitJSONArray(%q) accepted it", bad)
		}
	}
}

func FuzzSplitJSONArray(f *testing.F) {
	for _, s := range []string{`[]`, `[{"a":1},{"b":[2]}]`, `["x\"]"]`, `[1,2`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := splitJSONArray(b)
		if err != nil || !json.Valid(b) {
			return
		}
		// On valid JSON the elements are exactly the array's.
		var want []json.RawMessage
		if json.Unmarshal(b, &want) != nil {
			return
		}
		if len(items) != len(want) {
			t.Fatalf("%d elements, want %d", len(items), len(want))
		}
		for i := range want {
			if !bytes.Equal(items[i], want[i]) {
				t.Fatalf("element %d = %s, want %s", i, items[i], want[i])
			}
		}
	})
}
