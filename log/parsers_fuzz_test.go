package log

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"
)

// Fuzz targets for the log's own parsers of what senders post. Each checks
// a property beyond "does not panic": what is accepted is what the log can
// store and find again.

func FuzzK8sEvents(f *testing.F) {
	f.Add(eventList(k8sEvent("a", "get", "s")))
	f.Add([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"x","stage":"RequestReceived"},{}]}`))
	f.Add([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := k8sEvents(b)
		if err != nil {
			return
		}
		for _, ev := range evs {
			if !bytes.Contains(b, ev.raw) || !strings.HasPrefix(ev.key, "k8s:") || len(ev.key) > MaxIdempotencyKey || !printableASCII(ev.key) || ev.explicit {
				t.Fatalf("accepted event %q key %q from %q", ev.raw, ev.key, b)
			}
		}
	})
}

// Every event made of an OTLP record the decoder accepts must be an event
// the canonicalizer accepts: otherwise a valid record is refused.
func FuzzOTLPEvents(f *testing.F) {
	f.Add(mustMarshal(f, &logsv1.LogsData{ResourceLogs: []*logsv1.ResourceLogs{{ScopeLogs: []*logsv1.ScopeLogs{{LogRecords: []*logsv1.LogRecord{{Body: str("x")}}}}}}}))
	f.Add([]byte{0x0a, 0x04, 0x12, 0x02, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var data logsv1.LogsData
		if proto.Unmarshal(b, &data) != nil {
			return
		}
		checkOTLPEvents(t, &data)
	})
}

func FuzzOTLPJSON(f *testing.F) {
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"},"traceId":"5b8efff798038103d269b633813fc60c","attributes":[{"key":"n","value":{"intValue":"9007199254740993"}}]}]}]}]}`))
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"doubleValue":1e300}}]}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var data logsv1.LogsData
		if unmarshalOTLPJSON(b, &data) != nil {
			return
		}
		checkOTLPEvents(t, &data)
	})
}

func checkOTLPEvents(t *testing.T, data *logsv1.LogsData) {
	t.Helper()
	evs, _ := otlpEvents(data)
	for _, ev := range evs {
		if _, err := checkpoint.CanonicalEvent(ev.raw); err != nil {
			t.Fatalf("OTLP record made event %s, which the canonicalizer refuses: %v", ev.raw, err)
		}
		if ev.key != "" && (!strings.HasPrefix(ev.key, "otel:") || len(ev.key) > MaxIdempotencyKey || !printableASCII(ev.key)) {
			t.Fatalf("bad key %q", ev.key)
		}
	}
}

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("# writers\n" + TokenLine("deploy-bot", "s3cret") + "\n"))
	f.Add([]byte("a sha256:00\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseTokens(b)
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, e := range entries {
			if !validSourceName(e.name) || names[e.name] {
				t.Fatalf("accepted name %q from %q", e.name, b)
			}
			names[e.name] = true
		}
	})
}

// A witness's answer reaches the published checkpoint only as a line the
// log's strict verifier accepts.
func FuzzCanonicalCosignature(f *testing.F) {
	skey, vkey, _ := checkpoint.GenerateWitnessKey("w.example")
	ws, _ := checkpoint.NewWitnessSigner(skey)
	key, _ := checkpoint.NewWitnessVerifier(vkey)
	lskey, _, _ := checkpoint.GenerateLogKey("test.example/log")
	ls, _ := checkpoint.NewLogSigner(lskey)
	c := checkpoint.Checkpoint{Origin: "test.example/log", Size: 3, Hash: make([]byte, 32)}
	signed, err := checkpoint.Sign(c, ls)
	if err != nil {
		f.Fatal(err)
	}
	cosigned, _ := checkpoint.Sign(c, ws)
	good := cosigned[bytes.LastIndex(cosigned, []byte("\n\n"))+2:]
	f.Add(good)
	f.Add([]byte(nonCanonicalBase64(string(good))))
	f.Add(append([]byte("— other.example AAAA\n"), good...))
	f.Fuzz(func(t *testing.T, answer []byte) {
		line, why := canonicalCosignature(answer, signed, key)
		if why != "" {
			return
		}
		cos, err := checkpoint.Cosignatures(append(bytes.Clone(signed), line...), key)
		if err != nil || len(cos) != 1 {
			t.Fatalf("accepted %q as %q, which the strict verifier refuses: %v", answer, line, err)
		}
	})
}

// The stand-in of an event that is not I-JSON must itself be an event the
// canonicalizer accepts, within the room given, and marked.
func FuzzNotIJSONEvent(f *testing.F) {
	f.Add([]byte(`{"auditID":"b","stage":"ResponseComplete","requestObject":{"a":1,"a":2},"n":9007199254740993}`), 400)
	f.Add([]byte(`{"x":"\ud800","x":1,"tidemark_truncated":true}`), 200)
	f.Fuzz(func(t *testing.T, raw []byte, room int) {
		room = 150 + room%(checkpoint.MaxLeafSize-150)
		if room < 150 {
			room += checkpoint.MaxLeafSize - 150
		}
		out, err := notIJSONEvent(raw, room, k8sKeep)
		if err != nil {
			return
		}
		ev, err := checkpoint.CanonicalEvent(out)
		if err != nil {
			t.Fatalf("stand-in %q of %q is not I-JSON: %v", out, raw, err)
		}
		if len(ev.Canonical) > room || !bytes.Contains(ev.Canonical, []byte(`"tidemark_not_ijson":true`)) {
			t.Fatalf("stand-in %q of %q: %d bytes for room %d, or unmarked", ev.Canonical, raw, len(ev.Canonical), room)
		}
	})
}

// A truncated stand-in fits the room it was given, whatever the event.
func FuzzTruncatedEvent(f *testing.F) {
	f.Add([]byte(`{"auditID":"a","stage":"ResponseComplete","requestObject":{"data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`), 200)
	f.Add([]byte(`{}`), 195)
	f.Fuzz(func(t *testing.T, event []byte, room int) {
		canon, err := checkpoint.CanonicalEvent(event)
		if err != nil {
			return
		}
		room = 150 + room%(checkpoint.MaxLeafSize-150)
		if room < 150 {
			room += checkpoint.MaxLeafSize - 150
		}
		out, err := truncatedEvent(canon.Canonical, room, k8sKeep)
		if err != nil {
			return
		}
		ev, err := checkpoint.CanonicalEvent(out)
		if err != nil || len(ev.Canonical) > room {
			t.Fatalf("stand-in %q of %q for room %d: %d bytes, %v", out, event, room, len(ev.Canonical), err)
		}
	})
}
