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
	body, bodyHeld, err := s.readBody(w, r, source)
	defer bodyHeld.release()
	if err != nil {
		s.failOTLP(w, r, isProto, err)
		return
	}
	// Count the records and values in the bytes and admit them before
	// decoding: the decoder allocates per record and per value, and an
	// empty one is two bytes.
	var c otlpCount
	if isProto {
		c, err = otlpProtoCount(body)
	} else {
		c, err = otlpJSONCount(body)
	}
	if err != nil {
		s.failOTLP(w, r, isProto, errorf(http.StatusBadRequest, "bad_otlp", "the body is not an OTLP ExportLogsServiceRequest: %v", err))
		return
	}
	if c.records <= s.cfg.MaxEventsPerRequest && c.weight() > s.cfg.MaxInFlight {
		s.failOTLP(w, r, isProto, errorf(http.StatusRequestEntityTooLarge, "too_many_values",
			"the request holds %d log records and %d values (attributes, bodies, array and map elements); every %d values weigh as one event, and together they weigh more than the %d events this log holds in flight: split the batch",
			c.records, c.values, otlpValuesPerEvent, s.cfg.MaxInFlight))
		return
	}
	release, err := s.admit(source, c.records, c.weight(), "log records")
	if err != nil {
		s.failOTLP(w, r, isProto, err)
		return
	}
	defer release()
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
	// Each record's event carries its resource and its scope, which the
	// wire holds once: a large resource over many small records would be
	// copied records times over. Those copies are held like body bytes.
	// They are held with the body: together they must fit the budget, or
	// no retry could ever be taken.
	shared := otlpSharedBytes(&data)
	if bodyHeld.held+shared > s.cfg.MaxInFlightBytes {
		s.failOTLP(w, r, isProto, errorf(http.StatusRequestEntityTooLarge, "too_large",
			"the request's %d log records carry their resource and scope in every event: %d bytes of copies, which with the %d bytes held for the body are more than the %d bytes of request bodies this log holds (--max-inflight-bytes): split the batch, or send fewer records per resource",
			c.records, shared, bodyHeld.held, s.cfg.MaxInFlightBytes))
		return
	}
	if err := bodyHeld.take(shared); err != nil {
		s.failOTLP(w, r, isProto, err)
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

// otlpCount is what an OTLP request holds, counted on its bytes before it is
// decoded: its log records, and its values, every other message and list
// element the decoder allocates (attributes, bodies, array and map elements,
// resources, scopes, entity references and their keys). The decoder and the
// conversion to events allocate per value as they do per record: an empty
// AnyValue is two bytes of protobuf and about 140 bytes of memory.
type otlpCount struct {
	records, values int
}

// otlpValuesPerEvent is how many values weigh as much as one event in the
// in-flight bound: an event costs about a kilobyte until it is answered,
// a value about 140 bytes while its request is decoded.
const otlpValuesPerEvent = 8

// weight is what the request takes of the in-flight bound, in events.
func (c otlpCount) weight() int {
	return c.records + (c.values+otlpValuesPerEvent-1)/otlpValuesPerEvent
}

// otlpMessage names the OTLP messages the walk below follows.
type otlpMessage uint8

const (
	msgLogsData otlpMessage = iota
	msgResourceLogs
	msgResource
	msgScopeLogs
	msgScope
	msgLogRecord
	msgKeyValue
	msgAnyValue
	msgArrayValue
	msgKeyValueList
	msgEntityRef
	msgString // an element of a repeated string field
)

// otlpChild says what field num of message m holds, if the decoder
// allocates for it: its field numbers are opentelemetry-proto's (logs/v1,
// common/v1, resource/v1; go.opentelemetry.io/proto/otlp v1.9.0).
func otlpChild(m otlpMessage, num protowire.Number) (otlpMessage, bool) {
	switch {
	case m == msgLogsData && num == 1: // resource_logs
		return msgResourceLogs, true
	case m == msgResourceLogs && num == 1: // resource
		return msgResource, true
	case m == msgResourceLogs && num == 2: // scope_logs
		return msgScopeLogs, true
	case m == msgResource && num == 1: // attributes
		return msgKeyValue, true
	case m == msgResource && num == 3: // entity_refs
		return msgEntityRef, true
	case m == msgScopeLogs && num == 1: // scope
		return msgScope, true
	case m == msgScopeLogs && num == 2: // log_records
		return msgLogRecord, true
	case m == msgScope && num == 3: // attributes
		return msgKeyValue, true
	case m == msgLogRecord && num == 5: // body
		return msgAnyValue, true
	case m == msgLogRecord && num == 6: // attributes
		return msgKeyValue, true
	case m == msgKeyValue && num == 2: // value
		return msgAnyValue, true
	case m == msgAnyValue && num == 5: // array_value
		return msgArrayValue, true
	case m == msgAnyValue && num == 6: // kvlist_value
		return msgKeyValueList, true
	case m == msgArrayValue && num == 1: // values
		return msgAnyValue, true
	case m == msgKeyValueList && num == 1: // values
		return msgKeyValue, true
	case m == msgEntityRef && (num == 3 || num == 4): // id_keys, description_keys
		return msgString, true
	}
	return 0, false
}

// errOTLPTooDeep refuses messages nested deeper than proto.Unmarshal and
// protojson take (protowire.DefaultRecursionLimit).
var errOTLPTooDeep = fmt.Errorf("messages nested more than %d deep", protowire.DefaultRecursionLimit)

// otlpProtoCount counts the log records and values of a protobuf
// ExportLogsServiceRequest by walking its wire format, without decoding or
// allocating. A field the decoder does not allocate for, or of a known
// number with another wire type (which proto.Unmarshal keeps as an unknown
// field), is skipped; bytes that are not protobuf are an error. When
// proto.Unmarshal accepts a body, records is the number of records it
// decodes and values at least the number of values (a message field sent
// twice is counted twice, and merged into one by the decoder).
func otlpProtoCount(b []byte) (otlpCount, error) {
	var c otlpCount
	if err := c.walkProto(b, msgLogsData, 0); err != nil {
		return otlpCount{}, err
	}
	return c, nil
}

func (c *otlpCount) walkProto(b []byte, m otlpMessage, depth int) error {
	if depth > protowire.DefaultRecursionLimit {
		return errOTLPTooDeep
	}
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		child, ok := otlpChild(m, num)
		if !ok || typ != protowire.BytesType {
			if l = protowire.ConsumeFieldValue(num, typ, b); l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			continue
		}
		v, l := protowire.ConsumeBytes(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if child == msgLogRecord {
			c.records++
		} else {
			c.values++
		}
		if child != msgString {
			if err := c.walkProto(v, child, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// otlpJSONNames are the members that lead to the log records of an OTLP
// JSON request: each by its JSON name and its proto name, as protojson
// accepts either.
var otlpJSONNames = [3][2]string{{"resourceLogs", "resource_logs"}, {"scopeLogs", "scope_logs"}, {"logRecords", "log_records"}}

// otlpJSONCount counts the log records and values of an OTLP JSON request
// by scanning it, without decoding it or allocating per record. When
// unmarshalOTLPJSON accepts a body, records is the number of records it
// decodes; values is at least the number of values it decodes, counted as
// every object and every array element of the body, wherever they are
// (each message is an object; each list element an element). A body whose
// JSON structure is broken is an error.
func otlpJSONCount(b []byte) (otlpCount, error) {
	records := 0
	err := otlpJSONRecords(b, func(_, _, _ int, _ []byte) error {
		records++
		return nil
	})
	if err != nil {
		return otlpCount{}, err
	}
	return otlpCount{records: records, values: jsonContainerCount(b)}, nil
}

// otlpJSONRecords calls fn with each log record of an OTLP JSON request, as
// the sender's bytes (a slice of b), and where it is: its index in its
// resourceLogs, scopeLogs and logRecords arrays. protojson refuses a member
// that appears twice, or under both its names: every occurrence is followed.
func otlpJSONRecords(b []byte, fn func(ri, si, li int, record []byte) error) error {
	ri := 0
	return otlpJSONList(b, otlpJSONNames[0], func(rl []byte) error {
		si := 0
		defer func() { ri++ }()
		return otlpJSONList(rl, otlpJSONNames[1], func(sl []byte) error {
			li := 0
			defer func() { si++ }()
			return otlpJSONList(sl, otlpJSONNames[2], func(lr []byte) error {
				defer func() { li++ }()
				return fn(ri, si, li, lr)
			})
		})
	})
}

// otlpJSONList calls fn with each element of the array members of the
// object b named by either of names (null is an empty list).
func otlpJSONList(b []byte, names [2]string, fn func(item []byte) error) error {
	return rawObjectMembers(b, anyNesting, func(name, value []byte) error {
		if string(name) != names[0] && string(name) != names[1] || string(value) == "null" {
			return nil
		}
		return arrayElements(value, anyNesting, fn)
	})
}

// jsonContainerCount counts, in one pass, the objects of a JSON text and
// the elements of its arrays, an upper bound on both: every '{', '[' and ','
// outside strings.
func jsonContainerCount(b []byte) int {
	n := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[', ',':
			n++
		case '"':
			// To the closing quote, past escaped ones.
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		}
	}
	return n
}

// otlpSharedBytes returns the bytes that resources and scopes add to the
// events of data: every record's event holds its resource and its scope in
// JSON (otlpRecord), which the request holds once per ResourceLogs and
// ScopeLogs. A resource or scope that otlpEvents refuses counts as empty.
func otlpSharedBytes(data *logsv1.LogsData) int64 {
	var total int64
	for _, rl := range data.GetResourceLogs() {
		var rsize int64 = -1 // not encoded yet
		for _, sl := range rl.GetScopeLogs() {
			n := int64(len(sl.GetLogRecords()))
			if n == 0 {
				continue
			}
			if rsize < 0 {
				resource, _ := otlpResource(rl)
				rsize = otlpJSONSize(resource)
			}
			scope, _ := otlpScope(sl)
			total += n * (rsize + otlpJSONSize(scope))
		}
	}
	return total
}

// otlpJSONSize is the size of m as otlpRecord encodes it.
func otlpJSONSize(m map[string]any) int64 {
	if len(m) == 0 {
		return 0
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return 0
	}
	return int64(buf.Len())
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
	body, err := otlpHexIDsToBase64(body)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, data)
}

// otlpHexIDsToBase64 rewrites the hex traceId and spanId of each log record
// into the base64 that protojson reads. Only those members change: the
// others are copied as they are, and nothing is decoded into values (the
// body is scanned as otlpJSONCount scans it), so this takes one copy of the
// body, and none when it has no ids.
func otlpHexIDsToBase64(body []byte) ([]byte, error) {
	var out []byte
	copied := 0 // body[:copied] is in out
	err := otlpJSONRecords(body, func(ri, si, li int, record []byte) error {
		return rawObjectMembers(record, anyNesting, func(name, value []byte) error {
			switch string(name) {
			case "traceId", "trace_id", "spanId", "span_id":
			default:
				return nil
			}
			if value[0] != '"' {
				return fmt.Errorf("resourceLogs[%d].scopeLogs[%d].logRecords[%d].%s: want a hex string", ri, si, li, name)
			}
			s, err := stringMember(string(name), value)
			if err != nil {
				return fmt.Errorf("resourceLogs[%d].scopeLogs[%d].logRecords[%d].%w", ri, si, li, err)
			}
			id, err := hex.DecodeString(s)
			if err != nil {
				return fmt.Errorf("resourceLogs[%d].scopeLogs[%d].logRecords[%d].%s: OTLP JSON ids are hex: %v", ri, si, li, name, err)
			}
			// value is a slice of body: both run to the end of one array.
			start := cap(body) - cap(value)
			if out == nil {
				out = make([]byte, 0, len(body)) // base64 is shorter than hex
			}
			out = append(out, body[copied:start]...)
			out = append(out, '"')
			out = base64.StdEncoding.AppendEncode(out, id)
			out = append(out, '"')
			copied = start + len(value)
			return nil
		})
	})
	if err != nil || out == nil {
		return body, err
	}
	return append(out, body[copied:]...), nil
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
