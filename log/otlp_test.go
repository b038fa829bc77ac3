package log

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// testdata/otlp/logs.json is an OTLP/JSON ExportLogsServiceRequest as the
// OpenTelemetry Collector's otlphttp exporter (encoding: json) and the SDKs'
// OTLP/HTTP JSON exporters send it: camelCase names, hex trace and span ids
// (upper case here: OTLP says case-insensitive), uint64 times and int64
// values as strings or numbers, and an unknown field a receiver must ignore.

func str(s string) *commonv1.AnyValue {
	return &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: s}}
}

func kv(k string, v *commonv1.AnyValue) *commonv1.KeyValue {
	return &commonv1.KeyValue{Key: k, Value: v}
}

// otlpRequest is an ExportLogsServiceRequest in protobuf: LogsData has the
// same single field.
func otlpRequest(t *testing.T, records ...*logsv1.LogRecord) []byte {
	t.Helper()
	b, err := proto.Marshal(&logsv1.LogsData{ResourceLogs: []*logsv1.ResourceLogs{{
		Resource: &resourcev1.Resource{Attributes: []*commonv1.KeyValue{kv("service.name", str("payments-api"))}},
		ScopeLogs: []*logsv1.ScopeLogs{{
			Scope:      &commonv1.InstrumentationScope{Name: "audit"},
			LogRecords: records,
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// partialSuccess decodes an ExportLogsServiceResponse.
func partialSuccess(t *testing.T, b []byte) (rejected uint64, msg string) {
	t.Helper()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			t.Fatalf("response: unexpected field %d type %d", num, typ)
		}
		b = b[n:]
		ps, n := protowire.ConsumeBytes(b)
		b = b[n:]
		for len(ps) > 0 {
			num, typ, n := protowire.ConsumeTag(ps)
			ps = ps[n:]
			switch {
			case num == 1 && typ == protowire.VarintType:
				rejected, n = protowire.ConsumeVarint(ps)
			case num == 2 && typ == protowire.BytesType:
				var s []byte
				s, n = protowire.ConsumeBytes(ps)
				msg = string(s)
			default:
				t.Fatalf("partial_success: unexpected field %d", num)
			}
			ps = ps[n:]
		}
	}
	return rejected, msg
}

func TestOTLPProtobuf(t *testing.T) {
	tl := newK8sTestLog(t)
	auth := []string{"Authorization", "Bearer " + k8sToken}
	body := otlpRequest(t,
		&logsv1.LogRecord{TimeUnixNano: 1795645861504122741, SeverityNumber: logsv1.SeverityNumber_SEVERITY_NUMBER_INFO,
			Body:       str("deploy started"),
			Attributes: []*commonv1.KeyValue{kv("enduser.id", str("alice")), kv("log.record.uid", str("uid-1"))},
			TraceId:    bytes.Repeat([]byte{0xab}, 16), SpanId: bytes.Repeat([]byte{0xcd}, 8)},
		// Rejected: a duplicate attribute key; a span id of 4 bytes.
		&logsv1.LogRecord{Body: str("dup"), Attributes: []*commonv1.KeyValue{kv("a", str("1")), kv("a", str("2"))}},
		&logsv1.LogRecord{Body: str("short span"), SpanId: []byte{1, 2, 3, 4}},
		&logsv1.LogRecord{ObservedTimeUnixNano: 1795645862000000000, Body: str("second")},
	)
	r := tl.post("/v1/logs", "application/x-protobuf", body, auth...)
	if r.status != 200 || r.header.Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("%d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	rejected, msg := partialSuccess(t, r.body)
	if rejected != 2 || !strings.Contains(msg, `attribute "a" appears twice`) {
		t.Errorf("partial_success: %d %q, want 2 rejected, the duplicate key named", rejected, msg)
	}
	leaves := tl.leaves()
	if len(leaves) != 2 {
		t.Fatalf("%d leaves, want 2", len(leaves))
	}
	l, err := checkpoint.ParseLeaf(leaves[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"attributes":{"enduser.id":"alice","log.record.uid":"uid-1"},"body":"deploy started","resource":{"attributes":{"service.name":"payments-api"}},"scope":{"name":"audit"},"severityNumber":9,"spanId":"cdcdcdcdcdcdcdcd","time":"2026-11-25T22:31:01.504122741Z","timeUnixNano":"1795645861504122741","traceId":"abababababababababababababababab"}`
	if string(l.Event) != want || l.Source != "kube-apiserver" || l.IdempotencyKey != "otel:uid-1" {
		t.Errorf("leaf:\n got %s (source %q, key %q)\nwant %s", l.Event, l.Source, l.IdempotencyKey, want)
	}
	l, _ = checkpoint.ParseLeaf(leaves[1])
	if !bytes.Contains(l.Event, []byte(`"time":"2026-11-25T22:31:02Z"`)) {
		t.Errorf("observed time not used for time: %s", l.Event)
	}
	// A retried export: the record with log.record.uid is not logged twice.
	retry := otlpRequest(t, &logsv1.LogRecord{TimeUnixNano: 1795645861504122741, SeverityNumber: logsv1.SeverityNumber_SEVERITY_NUMBER_INFO,
		Body:       str("deploy started"),
		Attributes: []*commonv1.KeyValue{kv("enduser.id", str("alice")), kv("log.record.uid", str("uid-1"))},
		TraceId:    bytes.Repeat([]byte{0xab}, 16), SpanId: bytes.Repeat([]byte{0xcd}, 8)})
	r = tl.post("/v1/logs", "application/x-protobuf", retry, auth...)
	if r.status != 200 || len(r.body) != 0 {
		t.Errorf("retry: %d %x, want 200 and an empty response", r.status, r.body)
	}
	if n := tl.size(); n != 2 {
		t.Errorf("tree size %d after the retry, want 2", n)
	}
}

func TestOTLPJSON(t *testing.T) {
	tl := newK8sTestLog(t)
	body := readFixture(t, "otlp/logs.json")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(body)
	zw.Close()
	r := tl.post("/v1/logs", "application/json", buf.Bytes(), "Authorization", "Bearer "+k8sToken, "Content-Encoding", "gzip")
	if r.status != 200 || string(bytes.TrimSpace(r.body)) != `{}` {
		t.Fatalf("%d %s", r.status, r.body)
	}
	leaves := tl.leaves()
	if len(leaves) != 2 {
		t.Fatalf("%d leaves, want 2", len(leaves))
	}
	l, err := checkpoint.ParseLeaf(leaves[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"attributes":{"enduser.id":"alice","log.record.uid":"01JDQ7Z3X9K2M4N6P8R0T2V4W6","vault.big":"9007199254740993","vault.client":{"ip":"10.0.1.23"},"vault.hmac":"3q2+7w==","vault.nan":"NaN","vault.ok":true,"vault.path":"database/creds/payments","vault.policies":["default","payments-db"],"vault.ratio":0.25,"vault.request.size":512,"vault.ttl_seconds":3600},` +
		`"body":"alice read database/creds/payments","eventName":"secret.read","flags":1,"observedTimeUnixNano":"1795645861504900000",` +
		`"resource":{"attributes":{"k8s.namespace.name":"security","k8s.pod.name":"vault-0","service.name":"vault","service.version":"1.18.1"}},` +
		`"scope":{"attributes":{"audit.device":"otel"},"name":"vault.audit","version":"1.18.1"},"severityNumber":9,"severityText":"INFO","spanId":"eee19b7ec3c1b174",` +
		`"time":"2026-11-25T22:31:01.504122741Z","timeUnixNano":"1795645861504122741","traceId":"5b8efff798038103d269b633813fc60c"}`
	if string(l.Event) != want {
		t.Errorf("leaf:\n got %s\nwant %s", l.Event, want)
	}
	if l.IdempotencyKey != "otel:01JDQ7Z3X9K2M4N6P8R0T2V4W6" {
		t.Errorf("key %q", l.IdempotencyKey)
	}
	l, _ = checkpoint.ParseLeaf(leaves[1])
	if !bytes.Contains(l.Event, []byte(`"body":{"msg":"permission denied","path":"sys/policies/acl/root"}`)) {
		t.Errorf("kvlist body: %s", l.Event)
	}
	// Partial success in JSON.
	bad := `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"ok"}},{"traceId":"abcd","body":{"stringValue":"short trace id"}}]}]}]}`
	r = tl.post("/v1/logs", "application/json", []byte(bad), "Authorization", "Bearer "+k8sToken)
	var resp struct {
		PartialSuccess struct{ RejectedLogRecords, ErrorMessage string }
	}
	if err := json.Unmarshal(r.body, &resp); err != nil || r.status != 200 || resp.PartialSuccess.RejectedLogRecords != "1" ||
		!strings.Contains(resp.PartialSuccess.ErrorMessage, "traceId is 2 bytes") {
		t.Errorf("partial success: %d %s", r.status, r.body)
	}
}

func TestOTLPRefusals(t *testing.T) {
	tl := newK8sTestLog(t)
	auth := []string{"Authorization", "Bearer " + k8sToken}
	for _, tc := range []struct {
		name, ctype string
		body        []byte
		header      []string
		status      int
		want        string
	}{
		{"no token", "application/json", []byte(`{}`), nil, 401, "bearer token"},
		{"text", "text/plain", []byte(`{}`), auth, 415, "application/x-protobuf"},
		{"bad JSON", "application/json", []byte(`{"resourceLogs":[`), auth, 400, "not an OTLP"},
		{"wrong JSON type", "application/json", []byte(`{"resourceLogs":{}}`), auth, 400, "not an OTLP"},
		{"bad hex id", "application/json", []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":"zz"}]}]}]}`), auth, 400, "hex"},
		{"bad protobuf", "application/x-protobuf", []byte{0x0a, 0xff, 0x01}, auth, 400, "not an OTLP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tl.post("/v1/logs", tc.ctype, tc.body, tc.header...)
			if r.status != tc.status {
				t.Errorf("status %d, want %d (%s)", r.status, tc.status, r.body)
			}
			// A google.rpc.Status in the request's encoding.
			var msg string
			if tc.ctype == "application/x-protobuf" {
				var st struct{ code, msg string }
				for b := r.body; len(b) > 0; {
					num, typ, n := protowire.ConsumeTag(b)
					b = b[n:]
					n = protowire.ConsumeFieldValue(num, typ, b)
					if num == 2 {
						s, _ := protowire.ConsumeBytes(b)
						st.msg = string(s)
					}
					b = b[n:]
				}
				msg = st.msg
			} else {
				var st struct {
					Code    int
					Message string
				}
				json.Unmarshal(r.body, &st)
				msg = st.Message
				if st.Code == 0 {
					t.Errorf("no status code in %s", r.body)
				}
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q, want it to mention %q", msg, tc.want)
			}
		})
	}
	if n := tl.size(); n != 0 {
		t.Errorf("tree size %d, want 0", n)
	}
	// An export with no records is a success that logs nothing.
	if r := tl.post("/v1/logs", "application/x-protobuf", nil, auth...); r.status != http.StatusOK {
		t.Errorf("empty export: %d", r.status)
	}
}

func TestOTLPOversizedRecordIsTruncated(t *testing.T) {
	tl := newK8sTestLog(t)
	body := otlpRequest(t, &logsv1.LogRecord{TimeUnixNano: 1795645861504122741, SeverityText: "INFO",
		Body: str(strings.Repeat("x", 100_000)), Attributes: []*commonv1.KeyValue{kv("enduser.id", str("alice"))}})
	r := tl.post("/v1/logs", "application/x-protobuf", body, "Authorization", "Bearer "+k8sToken)
	if r.status != 200 || len(r.body) != 0 {
		t.Fatalf("%d %x", r.status, r.body)
	}
	l, err := checkpoint.ParseLeaf(tl.leaves()[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"tidemark_truncated":true`, `"tidemark_omitted":["body"]`, `"attributes":{"enduser.id":"alice"}`, `"severityText":"INFO"`} {
		if !bytes.Contains(l.Event, []byte(want)) {
			t.Errorf("stand-in %s lacks %s", l.Event, want)
		}
	}
}
