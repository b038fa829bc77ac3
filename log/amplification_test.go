package log

import (
	"bytes"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
)

// An amplification request is a small body that decodes into very many
// events: two bytes of protobuf are an empty OTLP log record, three bytes of
// NDJSON ("{}\n") an event. Decoding allocates per event, hundreds of bytes
// each, so before the bound on events per request 8 MB of them took the
// log's memory from 18 MiB to 7.6 GiB (cmd/tidemark's
// TestAmplifiedOTLPRequestKeepsTheLogSmall measures the real binary). Here
// each body shape gets a body of amplifiedBodySize (4 MB for values nested in
// one OTLP record): it must be refused with 413 before anything is decoded,
// append nothing, and allocate little.

// amplifiedBodySize is the size of each amplification body here: 350,000
// NDJSON events, 520,000 OTLP records.
const amplifiedBodySize = 1 << 20

// maxAllocatedByRefusal bounds what the whole process allocates while the
// log refuses one amplification body: the body's buffer (grown by doubling)
// and the HTTP plumbing. Decoding the events would take hundreds of MiB.
const maxAllocatedByRefusal = 16 << 20

// repeatTo returns unit repeated to about size bytes.
func repeatTo(unit string, size int) string {
	return strings.Repeat(unit, size/len(unit))
}

// emptyLogRecords is a protobuf LogsData (the body of an OTLP
// ExportLogsServiceRequest) of n empty log records, built on the wire
// format: building it with proto.Marshal would itself allocate per record.
func emptyLogRecords(n int) []byte {
	var scope []byte // ScopeLogs: log_records = 2, each empty
	for range n {
		scope = protowire.AppendTag(scope, 2, protowire.BytesType)
		scope = protowire.AppendVarint(scope, 0)
	}
	var rl []byte // ResourceLogs: scope_logs = 2
	rl = protowire.AppendTag(rl, 2, protowire.BytesType)
	rl = protowire.AppendBytes(rl, scope)
	var data []byte // LogsData: resource_logs = 1
	data = protowire.AppendTag(data, 1, protowire.BytesType)
	return protowire.AppendBytes(data, rl)
}

func TestEmptyLogRecordsIsLogsData(t *testing.T) {
	var data logsv1.LogsData
	if err := proto.Unmarshal(emptyLogRecords(5), &data); err != nil {
		t.Fatal(err)
	}
	if n := len(data.GetResourceLogs()[0].GetScopeLogs()[0].GetLogRecords()); n != 5 {
		t.Fatalf("%d records, want 5", n)
	}
}

// allocatedBy returns the bytes the process allocated while f ran.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// nestedValues is a protobuf LogsData of one log record whose body is an
// array of n empty values: two bytes each, like empty records.
func nestedValues(n int) []byte {
	wrap := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	var values []byte // ArrayValue: values = 1
	for range n {
		values = protowire.AppendTag(values, 1, protowire.BytesType)
		values = protowire.AppendVarint(values, 0)
	}
	// LogsData.resource_logs, ResourceLogs.scope_logs, ScopeLogs.log_records,
	// LogRecord.body, AnyValue.array_value.
	return wrap(1, wrap(2, wrap(2, wrap(5, wrap(5, values)))))
}

func TestAmplifiedBatchesAreRefusedBeforeDecoding(t *testing.T) {
	tl := newK8sTestLog(t)
	auth := []string{"Authorization", "Bearer " + k8sToken}
	otlpJSON := `{"resourceLogs":[{"scopeLogs":[{"logRecords":[` + strings.TrimSuffix(repeatTo(`{},`, amplifiedBodySize), ",") + `]}]}]}`
	records := []string{"at most 10000", "split"}
	values := []string{"values", "split"}
	for _, tc := range []struct {
		name, path, ctype string
		body              []byte
		want              []string
	}{
		{"ndjson", "/v1/events", "application/x-ndjson", []byte(repeatTo("{}\n", amplifiedBodySize)), records},
		{"json_array", "/v1/events", "application/json", []byte("[" + strings.TrimSuffix(repeatTo("{},", amplifiedBodySize), ",") + "]"), records},
		{"k8s_eventlist", "/v1/k8s/audit", "application/json", []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` +
			strings.TrimSuffix(repeatTo(`{"auditID":"a","stage":"ResponseComplete"},`, amplifiedBodySize), ",") + `]}`), records},
		{"otlp_json", "/v1/logs", "application/json", []byte(otlpJSON), records},
		// "race" made the OTLP JSON path rewrite hex trace ids, which
		// decoded the whole body into map[string]any.
		{"otlp_json_with_ids", "/v1/logs", "application/json", []byte(strings.Replace(otlpJSON, "{}", `{"traceId":""}`, 1)), records},
		{"otlp_protobuf", "/v1/logs", "application/x-protobuf", emptyLogRecords(amplifiedBodySize / 2), records},
		// One record, but 2,000,000 values in it: the decoder allocates for
		// each value as for each record.
		{"otlp_protobuf_values", "/v1/logs", "application/x-protobuf", nestedValues(2_000_000), values},
		{"otlp_json_values", "/v1/logs", "application/json", []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"arrayValue":{"values":[` +
			strings.TrimSuffix(strings.Repeat(`{},`, 1_000_000), ",") + `]}}}]}]}]}`), values},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			allocated := allocatedBy(func() { r = tl.post(tc.path, tc.ctype, tc.body, auth...) })
			if r.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d bytes: status %d (%.200s), want 413", len(tc.body), r.status, r.body)
			}
			msg := errorMessage(t, tc.ctype, r)
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q: want the limit and what to do (%q)", msg, want)
				}
			}
			if allocated > maxAllocatedByRefusal {
				t.Errorf("refusing %d bytes allocated %d MiB, want at most %d MiB", len(tc.body), allocated>>20, maxAllocatedByRefusal>>20)
			}
			t.Logf("%d bytes refused: %s; %.1f MiB allocated", len(tc.body), msg, float64(allocated)/(1<<20))
		})
	}
	if n := tl.size(); n != 0 {
		t.Errorf("tree size %d, want 0: a refused request appends nothing", n)
	}
}

// errorMessage is the message of an error answer: {"error": ...}, or an
// OTLP google.rpc.Status in JSON or protobuf.
func errorMessage(t *testing.T, ctype string, r response) string {
	t.Helper()
	if ctype == "application/x-protobuf" {
		for b := r.body; len(b) > 0; {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				t.Fatalf("not a google.rpc.Status: %x", r.body)
			}
			b = b[n:]
			if num == 2 && typ == protowire.BytesType {
				s, _ := protowire.ConsumeBytes(b)
				return string(s)
			}
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
		}
		return ""
	}
	var e struct{ Error, Message string }
	if err := json.Unmarshal(bytes.TrimSpace(r.body), &e); err != nil {
		t.Fatalf("error answer %s: %v", r.body, err)
	}
	return e.Error + e.Message
}
