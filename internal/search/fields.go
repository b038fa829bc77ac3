package search

import (
	"encoding/json"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Fields are what the index keeps of one event.
type Fields struct {
	Actor, Action, Resource, Outcome string
	// Text is the event's string values, for full-text search.
	Text string
}

// MaxValue is the most bytes of a field the index keeps; a longer value
// is cut at a character boundary, and a query's value is cut the same
// way, so a match on a long value is found, and then checked in full
// against the leaf ([Query.Matches]).
const MaxValue = 200

// MaxText is the most bytes of an event's string values indexed for
// full-text search.
const MaxText = 8 << 10

// Extract finds the fields of an event (its canonical JSON object, the
// "event" member of a leaf): first through the mapping's pointers, then in
// the built-in shapes, the first non-empty string in this order:
//
//	actor:    actor, actor.name, actor.id (Tidemark); user.username (Kubernetes);
//	          attributes.actor, attributes["enduser.id"], attributes["user.id"],
//	          attributes["user.name"] (OpenTelemetry); user.name (ECS);
//	          userIdentity.arn, userIdentity.userName (CloudTrail);
//	          auth.display_name (Vault audit)
//	action:   action; verb (Kubernetes); attributes.action,
//	          attributes["event.action"], eventName, attributes["event.name"]
//	          (OpenTelemetry); event.action (ECS); eventName (CloudTrail);
//	          request.operation (Vault); PROGRAM (syslog-ng)
//	resource: resource (a string); objectRef as namespace/resource/name, else
//	          requestURI (Kubernetes); attributes.resource (OpenTelemetry);
//	          request.path (Vault); HOST (syslog-ng), host (Vector),
//	          kubernetes.namespace_name/pod_name (Fluent Bit)
//	outcome:  outcome; responseStatus.code (Kubernetes: 2xx and 3xx success,
//	          401 and 403 denied, others failure); attributes.outcome,
//	          attributes["event.outcome"] (OpenTelemetry); event.outcome
//	          (ECS); errorCode (CloudTrail: *Denied*/*Unauthorized* denied,
//	          others failure; none with an eventName, success); error
//	          (Vault responses: "permission denied" denied, others failure,
//	          none success)
//
// An event that is not a JSON object has no fields.
func Extract(event []byte, m *Mapping) Fields {
	var doc map[string]any
	d := json.NewDecoder(strings.NewReader(string(event)))
	d.UseNumber()
	if d.Decode(&doc) != nil {
		return Fields{}
	}
	if _, err := d.Token(); err != io.EOF {
		return Fields{} // more after the object: not one JSON value
	}
	return extract(doc, m)
}

func extract(doc map[string]any, m *Mapping) Fields {
	var f Fields
	if m != nil {
		f.Actor = m.first(doc, "actor")
		f.Action = m.first(doc, "action")
		f.Resource = m.first(doc, "resource")
		f.Outcome = m.first(doc, "outcome")
	}
	if f.Actor == "" {
		f.Actor = firstString(doc, actorPaths)
	}
	if f.Action == "" {
		f.Action = firstString(doc, actionPaths)
	}
	if f.Resource == "" {
		f.Resource = resourceOf(doc)
	}
	if f.Outcome == "" {
		f.Outcome = outcomeOf(doc)
	}
	var b strings.Builder
	appendText(&b, doc, 0)
	f.Text = b.String()
	return f
}

var (
	actorPaths = [][]string{
		{"actor"}, {"actor", "name"}, {"actor", "id"},
		{"user", "username"},
		{"attributes", "actor"}, {"attributes", "enduser.id"}, {"attributes", "user.id"}, {"attributes", "user.name"},
		{"user", "name"},
		{"userIdentity", "arn"}, {"userIdentity", "userName"},
		{"auth", "display_name"},
	}
	actionPaths = [][]string{
		{"action"},
		{"verb"},
		{"attributes", "action"}, {"attributes", "event.action"}, {"eventName"}, {"attributes", "event.name"},
		{"event", "action"},
		{"request", "operation"},
		{"PROGRAM"},
	}
)

func firstString(doc map[string]any, paths [][]string) string {
	for _, p := range paths {
		if s := stringAt(doc, p); s != "" {
			return s
		}
	}
	return ""
}

// stringAt is the string at path, or "".
func stringAt(v any, path []string) string {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func resourceOf(doc map[string]any) string {
	if s := stringAt(doc, []string{"resource"}); s != "" {
		return s
	}
	if ref, ok := doc["objectRef"].(map[string]any); ok {
		var parts []string
		for _, k := range []string{"namespace", "resource", "name"} {
			if s := stringAt(ref, []string{k}); s != "" {
				parts = append(parts, s)
			}
		}
		if sub := stringAt(ref, []string{"subresource"}); sub != "" && len(parts) > 0 {
			parts[len(parts)-1] += "/" + sub
		}
		if len(parts) > 0 {
			return strings.Join(parts, "/")
		}
	}
	if _, k8s := doc["verb"]; k8s {
		if s := stringAt(doc, []string{"requestURI"}); s != "" {
			return s
		}
	}
	for _, p := range [][]string{{"attributes", "resource"}, {"request", "path"}, {"HOST"}, {"host"}} {
		if s := stringAt(doc, p); s != "" {
			return s
		}
	}
	if ns, pod := stringAt(doc, []string{"kubernetes", "namespace_name"}), stringAt(doc, []string{"kubernetes", "pod_name"}); ns != "" && pod != "" {
		return ns + "/" + pod
	}
	return ""
}

func outcomeOf(doc map[string]any) string {
	for _, p := range [][]string{{"outcome"}, {"attributes", "outcome"}, {"attributes", "event.outcome"}, {"event", "outcome"}} {
		if s := stringAt(doc, p); s != "" {
			return s
		}
	}
	if rs, ok := doc["responseStatus"].(map[string]any); ok {
		if n, ok := rs["code"].(json.Number); ok {
			if code, err := strconv.Atoi(n.String()); err == nil {
				switch {
				case code >= 200 && code < 400:
					return "success"
				case code == 401 || code == 403:
					return "denied"
				default:
					return "failure"
				}
			}
		}
	}
	if _, ct := doc["eventSource"]; ct {
		if code := stringAt(doc, []string{"errorCode"}); code != "" {
			if strings.Contains(code, "Denied") || strings.Contains(code, "Unauthorized") {
				return "denied"
			}
			return "failure"
		}
		if stringAt(doc, []string{"eventName"}) != "" {
			return "success"
		}
	}
	if _, vault := doc["request"].(map[string]any); vault && stringAt(doc, []string{"type"}) == "response" {
		switch e := stringAt(doc, []string{"error"}); {
		case strings.Contains(e, "permission denied"):
			return "denied"
		case e != "":
			return "failure"
		default:
			return "success"
		}
	}
	return ""
}

// appendText appends the string values of v, space-separated, up to
// MaxText bytes.
func appendText(b *strings.Builder, v any, depth int) {
	if b.Len() >= MaxText || depth > 64 {
		return
	}
	switch v := v.(type) {
	case string:
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if room := MaxText - b.Len(); len(v) > room {
			v = cutAt(v, room)
		}
		b.WriteString(v)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			appendText(b, v[k], depth+1)
		}
	case []any:
		for _, e := range v {
			appendText(b, e, depth+1)
		}
	}
}

// Cut shortens s to MaxValue bytes at a character boundary.
func Cut(s string) string { return cutAt(s, MaxValue) }

func cutAt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
