package log

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// POST /v1/logs is OTLP/HTTP's logs endpoint, so an OpenTelemetry Collector
// (otlphttp exporter) or an SDK's OTLP log exporter can send audit records,
// as protobuf (application/x-protobuf) or OTLP JSON (application/json),
// gzip or not. The request is an ExportLogsServiceRequest, whose only field
// (resource_logs = 1) is LogsData's: it is decoded as LogsData, which keeps
// the collector package, and the gRPC and grpc-gateway it imports, out of
// the build.
//
// Each log record is one leaf. Its event is the record in OTLP JSON's field
// names, with the key-value lists flattened into JSON objects and its
// resource and scope beside it:
//
//	{"time":"2026-11-25T22:31:01.504122741Z","timeUnixNano":"1795645861504122741",
//	 "severityNumber":9,"severityText":"INFO","body":"user alice read secret db",
//	 "attributes":{"user.id":"alice","k8s.namespace.name":"prod"},
//	 "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
//	 "resource":{"attributes":{"service.name":"vault"}},
//	 "scope":{"name":"audit","version":"1.2.0"}}
//
// "time" is timeUnixNano (or observedTimeUnixNano when that is unset) in
// RFC 3339, for search; every other member is the sender's. Values map to
// JSON as OTLP JSON maps them, except that an intValue within ±2^53 is a
// number (a string beyond, as I-JSON needs), a non-finite doubleValue is
// the string "NaN", "Infinity" or "-Infinity", and bytesValue is base64.
//
// A record with the attribute log.record.uid (OpenTelemetry's unique id of
// a log record) carries the key "otel:<uid>", so a retried export does not
// log it twice. A record that cannot be logged (a duplicate attribute key,
// which JSON objects cannot hold; a trace or span id of the wrong length)
// is rejected and counted in partial_success, and the others are logged; a
// record too large for a leaf is logged as a truncated stand-in
// (truncatedEvent). A body that does not decode is refused whole (400) with
// a google.rpc.Status in the request's encoding, as OTLP/HTTP says.

// otlpKeep are the members a truncated stand-in of a log record keeps first.
var otlpKeep = []string{"time", "timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "eventName", "traceId", "spanId", "resource", "scope", "attributes", "body"}

// otlpUIDAttribute is the semantic-convention attribute that names a log
// record uniquely; the log uses it as the record's idempotency key.
const otlpUIDAttribute = "log.record.uid"

// handleOTLPLogs serves POST /v1/logs.
func (s *Server) handleOTLPLogs(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isProto := mt == "application/x-protobuf"
	if !isProto && mt != "application/json" {
		s.failOTLP(w, r, false, errorf(http.StatusUnsupportedMediaType, "content_type", "send OTLP logs as application/x-protobuf or application/json"))
		return
	}
	source, err := s.authenticate(r)
	if err != nil {
		s.failOTLP(w, r, isProto, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.failOTLP(w, r, isProto, err)
		return
	}
	var data logsv1.LogsData
	if isProto {
		err = proto.Unmarshal(body, &data)
	} else {
		err = unmarshalOTLPJSON(body, &data)
	}
	if err != nil {
		s.failOTLP(w, r, isProto, errorf(http.StatusBadRequest, "bad_otlp", "the body is not an OTLP ExportLogsServiceRequest: %v", err))
		return
	}
	evs, refused := otlpEvents(&data)
	rejected := len(refused)
	var firstErr error
	if rejected > 0 {
		firstErr = refused[0]
	}
	if len(evs) > 0 {
		results, err := s.appendBatch(r.Context(), source, evs, appendOptions{partial: true, truncate: true, keep: otlpKeep, endpoint: "otlp"})
		if err != nil {
			s.failOTLP(w, r, isProto, err)
			return
		}
		for _, res := range results {
			if res.err != nil {
				rejected++
				if firstErr == nil {
					firstErr = res.err
				}
			}
		}
	}
	msg := ""
	if firstErr != nil {
		msg = fmt.Sprintf("%d log record(s) rejected; the first: %v", rejected, firstErr)
		s.metrics.rejected.WithLabelValues("otlp_record").Add(float64(rejected))
	}
	writeOTLPResponse(w, isProto, rejected, msg)
}

// otlpEvents makes one event per log record, and an error for each record
// it cannot make an event of.
func otlpEvents(data *logsv1.LogsData) (evs []ingestEvent, refused []error) {
	n := 0
	for ri, rl := range data.GetResourceLogs() {
		resource, rerr := otlpResource(rl)
		for si, sl := range rl.GetScopeLogs() {
			scope, serr := otlpScope(sl)
			for li, lr := range sl.GetLogRecords() {
				n++
				where := fmt.Sprintf("log record %d (resourceLogs[%d].scopeLogs[%d].logRecords[%d])", n, ri, si, li)
				ev, key, err := otlpRecord(lr, resource, scope)
				err = errors.Join(rerr, serr, err)
				if err != nil {
					refused = append(refused, fmt.Errorf("%s: %w", where, err))
					continue
				}
				evs = append(evs, ingestEvent{raw: ev, key: key, where: where})
			}
		}
	}
	return evs, refused
}

func otlpResource(rl *logsv1.ResourceLogs) (map[string]any, error) {
	m := map[string]any{}
	res := rl.GetResource()
	attrs, err := otlpAttributes(res.GetAttributes())
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	if len(attrs) > 0 {
		m["attributes"] = attrs
	}
	if d := res.GetDroppedAttributesCount(); d > 0 {
		m["droppedAttributesCount"] = d
	}
	if u := rl.GetSchemaUrl(); u != "" {
		m["schemaUrl"] = u
	}
	return m, nil
}

func otlpScope(sl *logsv1.ScopeLogs) (map[string]any, error) {
	m := map[string]any{}
	sc := sl.GetScope()
	if v := sc.GetName(); v != "" {
		m["name"] = v
	}
	if v := sc.GetVersion(); v != "" {
		m["version"] = v
	}
	attrs, err := otlpAttributes(sc.GetAttributes())
	if err != nil {
		return nil, fmt.Errorf("scope: %w", err)
	}
	if len(attrs) > 0 {
		m["attributes"] = attrs
	}
	if d := sc.GetDroppedAttributesCount(); d > 0 {
		m["droppedAttributesCount"] = d
	}
	if u := sl.GetSchemaUrl(); u != "" {
		m["schemaUrl"] = u
	}
	return m, nil
}

// otlpRecord returns a log record's event and its idempotency key.
func otlpRecord(lr *logsv1.LogRecord, resource, scope map[string]any) ([]byte, string, error) {
	m := map[string]any{}
	if len(resource) > 0 {
		m["resource"] = resource
	}
	if len(scope) > 0 {
		m["scope"] = scope
	}
	t, ot := lr.GetTimeUnixNano(), lr.GetObservedTimeUnixNano()
	if t != 0 {
		m["timeUnixNano"] = strconv.FormatUint(t, 10)
	}
	if ot != 0 {
		m["observedTimeUnixNano"] = strconv.FormatUint(ot, 10)
	}
	if t == 0 {
		t = ot
	}
	if t != 0 && t <= math.MaxInt64 {
		m["time"] = time.Unix(0, int64(t)).UTC().Format(time.RFC3339Nano)
	}
	if v := lr.GetSeverityNumber(); v != 0 {
		m["severityNumber"] = int32(v)
	}
	if v := lr.GetSeverityText(); v != "" {
		m["severityText"] = v
	}
	if lr.GetBody() != nil {
		body, err := otlpValue(lr.GetBody())
		if err != nil {
			return nil, "", fmt.Errorf("body: %w", err)
		}
		m["body"] = body
	}
	attrs, err := otlpAttributes(lr.GetAttributes())
	if err != nil {
		return nil, "", err
	}
	if len(attrs) > 0 {
		m["attributes"] = attrs
	}
	if d := lr.GetDroppedAttributesCount(); d > 0 {
		m["droppedAttributesCount"] = d
	}
	if f := lr.GetFlags(); f != 0 {
		m["flags"] = f
	}
	if id := lr.GetTraceId(); len(id) > 0 {
		if len(id) != 16 {
			return nil, "", fmt.Errorf("traceId is %d bytes; a trace id is 16", len(id))
		}
		m["traceId"] = hex.EncodeToString(id)
	}
	if id := lr.GetSpanId(); len(id) > 0 {
		if len(id) != 8 {
			return nil, "", fmt.Errorf("spanId is %d bytes; a span id is 8", len(id))
		}
		m["spanId"] = hex.EncodeToString(id)
	}
	if v := lr.GetEventName(); v != "" {
		m["eventName"] = v
	}
	key := ""
	if uid, ok := attrs[otlpUIDAttribute].(string); ok && uid != "" {
		key = "otel:" + uid
		if len(key) > MaxIdempotencyKey || !printableASCII(key) {
			return nil, "", fmt.Errorf("attribute %s must be at most %d printable ASCII characters", otlpUIDAttribute, MaxIdempotencyKey-len("otel:"))
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, "", err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), key, nil
}

// otlpAttributes flattens a key-value list into a JSON object.
func otlpAttributes(kvs []*commonv1.KeyValue) (map[string]any, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		if _, dup := m[kv.GetKey()]; dup {
			return nil, fmt.Errorf("attribute %q appears twice (OTLP keys must be unique; a JSON object cannot hold both)", kv.GetKey())
		}
		v, err := otlpValue(kv.GetValue())
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", kv.GetKey(), err)
		}
		m[kv.GetKey()] = v
	}
	return m, nil
}

// otlpValue maps an AnyValue to a JSON value.
func otlpValue(v *commonv1.AnyValue) (any, error) {
	switch x := v.GetValue().(type) {
	case nil:
		return nil, nil
	case *commonv1.AnyValue_StringValue:
		return x.StringValue, nil
	case *commonv1.AnyValue_BoolValue:
		return x.BoolValue, nil
	case *commonv1.AnyValue_IntValue:
		if x.IntValue > 1<<53 || x.IntValue < -(1<<53) {
			return strconv.FormatInt(x.IntValue, 10), nil
		}
		return json.Number(strconv.FormatInt(x.IntValue, 10)), nil
	case *commonv1.AnyValue_DoubleValue:
		switch f := x.DoubleValue; {
		case math.IsNaN(f):
			return "NaN", nil
		case math.IsInf(f, 1):
			return "Infinity", nil
		case math.IsInf(f, -1):
			return "-Infinity", nil
		default:
			return f, nil
		}
	case *commonv1.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue), nil
	case *commonv1.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			ev, err := otlpValue(e)
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
		return out, nil
	case *commonv1.AnyValue_KvlistValue:
		m, err := otlpAttributes(x.KvlistValue.GetValues())
		if m == nil && err == nil {
			m = map[string]any{}
		}
		return m, err
	}
	return nil, fmt.Errorf("unknown value type %T", v.GetValue())
}

// unmarshalOTLPJSON decodes OTLP JSON: protojson's mapping, except that
// trace and span ids are hex, not base64. Unknown fields are ignored, as
// the OTLP specification requires of receivers.
func unmarshalOTLPJSON(body []byte, data *logsv1.LogsData) error {
	if bytes.Contains(body, []byte("pan")) || bytes.Contains(body, []byte("race")) {
		var err error
		if body, err = otlpHexIDsToBase64(body); err != nil {
			return err
		}
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, data)
}

// otlpHexIDsToBase64 rewrites the hex traceId and spanId of each log record
// into the base64 that protojson reads. Only those members change: the
// body is decoded with json.Number, so no number loses digits.
func otlpHexIDsToBase64(body []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var root map[string]any
	if err := d.Decode(&root); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("data after the JSON object")
	}
	for ri, rl := range otlpList(root, "resourceLogs", "resource_logs") {
		for si, sl := range otlpList(rl, "scopeLogs", "scope_logs") {
			for li, lr := range otlpList(sl, "logRecords", "log_records") {
				for _, name := range []string{"traceId", "trace_id", "spanId", "span_id"} {
					v, ok := lr[name]
					if !ok {
						continue
					}
					s, ok := v.(string)
					if !ok {
						return nil, fmt.Errorf("resourceLogs[%d].scopeLogs[%d].logRecords[%d].%s: want a hex string", ri, si, li, name)
					}
					b, err := hex.DecodeString(s)
					if err != nil {
						return nil, fmt.Errorf("resourceLogs[%d].scopeLogs[%d].logRecords[%d].%s: OTLP JSON ids are hex: %v", ri, si, li, name, err)
					}
					lr[name] = base64.StdEncoding.EncodeToString(b)
				}
			}
		}
	}
	return json.Marshal(root)
}

// otlpList returns the objects in the array member of m named by one of
// names; anything else is left for protojson to refuse.
func otlpList(m map[string]any, names ...string) []map[string]any {
	var out []map[string]any
	for _, name := range names {
		arr, _ := m[name].([]any)
		for _, e := range arr {
			if o, ok := e.(map[string]any); ok {
				out = append(out, o)
			}
		}
	}
	return out
}

// writeOTLPResponse answers an ExportLogsServiceResponse, with
// partial_success when records were rejected.
func writeOTLPResponse(w http.ResponseWriter, isProto bool, rejected int, msg string) {
	if isProto {
		var b []byte
		if rejected > 0 {
			var ps []byte
			ps = protowire.AppendTag(ps, 1, protowire.VarintType) // rejected_log_records
			ps = protowire.AppendVarint(ps, uint64(rejected))
			ps = protowire.AppendTag(ps, 2, protowire.BytesType) // error_message
			ps = protowire.AppendString(ps, msg)
			b = protowire.AppendTag(b, 1, protowire.BytesType) // partial_success
			b = protowire.AppendBytes(b, ps)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
		return
	}
	resp := map[string]any{}
	if rejected > 0 {
		// protojson's form: int64 as a string.
		resp["partialSuccess"] = map[string]any{"rejectedLogRecords": strconv.Itoa(rejected), "errorMessage": msg}
	}
	writeJSON(w, http.StatusOK, resp)
}

// failOTLP answers an error as OTLP/HTTP does: a google.rpc.Status in the
// request's encoding, with the HTTP status of writeError (and Retry-After
// on 503, which OTLP exporters honour).
func (s *Server) failOTLP(w http.ResponseWriter, r *http.Request, isProto bool, err error) {
	he := publicError(w, err)
	if he.status == http.StatusInternalServerError {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", he.status, "request_id", w.Header().Get(requestIDHeader), "err", err)
	}
	s.metrics.rejected.WithLabelValues(he.cause).Inc()
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.retryAfter))
	}
	code := grpcCode(he.status)
	if isProto {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(code))
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, he.msg)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(he.status)
		_, _ = w.Write(b)
		return
	}
	writeJSON(w, he.status, map[string]any{"code": code, "message": he.msg})
}

// grpcCode is the google.rpc.Code for an HTTP status.
func grpcCode(status int) int {
	switch status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return 3 // INVALID_ARGUMENT
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	}
	if status >= 500 {
		return 13 // INTERNAL
	}
	return 2 // UNKNOWN
}
