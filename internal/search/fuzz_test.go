package search

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzExtract: any bytes a sender can make an event of give fields without
// a panic, each a string the event holds (or a Kubernetes path or outcome
// made from its values), within the bounds the index keeps.
func FuzzExtract(f *testing.F) {
	for _, s := range []string{
		`{"actor":{"name":"alice"},"action":"secret.read","resource":"prod/db","outcome":"success"}`,
		`{"verb":"get","user":{"username":"bob"},"objectRef":{"namespace":"p","resource":"secrets","name":"db","subresource":"x"},"responseStatus":{"code":403}}`,
		`{"eventSource":"s3","eventName":"GetObject","errorCode":"AccessDenied","userIdentity":{"arn":"a"}}`,
		`{"type":"response","request":{"operation":"read","path":"x"},"error":"permission denied"}`,
		`{"a":[[[[[{"b":"\u00e9"}]]]]]}`, `[]`, `1`, `{`,
	} {
		f.Add([]byte(s))
	}
	m, err := ParseMapping([]byte("actor /a/0/b\nresource /x~1y\n"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, event []byte) {
		for _, mp := range []*Mapping{nil, m} {
			fl := Extract(event, mp)
			if len(fl.Text) > MaxText {
				t.Fatalf("text of %d bytes", len(fl.Text))
			}
			if !json.Valid(event) && fl != (Fields{}) {
				t.Fatalf("fields from invalid JSON: %+v", fl)
			}
			for _, v := range []string{fl.Actor, fl.Action, fl.Outcome} {
				// encoding/json turns invalid UTF-8 into U+FFFD; the log's
				// events are valid UTF-8 (ParseLeaf).
				if v != "" && utf8.Valid(event) && !strings.Contains(string(event), jsonInner(v)) && !isOutcomeWord(v) {
					t.Fatalf("field %q is not in the event %q", v, event)
				}
			}
		}
	})
}

// jsonInner is v as it would appear inside a JSON string, without quotes,
// when it needs no escapes; otherwise "" (always contained).
func jsonInner(v string) string {
	b, _ := json.Marshal(v)
	s := string(b[1 : len(b)-1])
	if s != v || !utf8.ValidString(v) {
		return ""
	}
	return s
}

func isOutcomeWord(v string) bool { return v == "success" || v == "failure" || v == "denied" }

// FuzzQuery: any query string either is refused by ParseQuery or runs on
// the index without an SQL error (nothing a sender writes is SQL or FTS5
// syntax).
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"actor=alice", "q=hello+wor*", `q="a" OR b`, "q=NEAR(a b)", "resource=prod/*&since=2026-11-24T00:00:00Z",
		"outcome=*&cursor=5&limit=3", "q=a*b*", "q=%E2%85%AB", "actor=%FF*", "q=-a+%2Bb",
	} {
		f.Add(s)
	}
	st, err := OpenSQLite(context.Background(), filepath.Join(f.TempDir(), "search.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	rows := testRows()
	if ok, err := st.Commit(context.Background(), 0, uint64(len(rows)), rows); !ok || err != nil {
		f.Fatal(ok, err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v)
		if err != nil {
			return
		}
		got, _, err := st.Find(context.Background(), q, q.Limit)
		if err != nil {
			t.Fatalf("Find(%q): %v", raw, err)
		}
		if len(got) > q.Limit {
			t.Fatalf("%d results for limit %d", len(got), q.Limit)
		}
	})
}
