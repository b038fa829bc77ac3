package log

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// The kube-apiserver's audit webhook backend (--audit-webhook-config-file)
// POSTs an audit.k8s.io/v1 EventList, in batch mode up to 400 events
// (--audit-webhook-batch-max-size), in blocking mode one. It retries a
// batch on any answer but 2xx, so:
//
//   - the answer is 200 only once every event of the batch is durably
//     sequenced (appendBatch returns after that);
//   - a redelivered event is not logged twice: each event's leaf carries
//     the idempotency key "k8s:<auditID>/<stage>" (an event has one
//     auditID and goes through up to four stages, each its own event), so
//     the index answers a retry also after a restart or a crash (Build
//     reads the key back from the leaf);
//   - an event too large for a leaf does not fail the batch: it is logged
//     as a truncated stand-in (truncatedEvent) that keeps its auditID,
//     stage, verb, user, objectRef and whatever else fits, with the SHA-256
//     of the original.
//
// Each event is kept as the apiserver sent it: the EventList envelope is
// split without decoding the items (no Go structs that would drop fields
// a newer apiserver adds), and each item is canonicalized like any event.
// An item without an auditID or a stage, or a body that is not an
// audit.k8s.io/v1 EventList, is refused whole (400) with nothing appended:
// an apiserver never sends one.

// k8sAPIVersion is the only audit API version the apiserver still sends.
const k8sAPIVersion = "audit.k8s.io/v1"

// k8sKeep are the members a truncated stand-in of an audit event keeps
// first: who did what to which object, when, and with what result.
var k8sKeep = []string{
	"kind", "apiVersion", "level", "auditID", "stage", "verb", "user", "impersonatedUser",
	"objectRef", "responseStatus", "requestURI", "sourceIPs", "userAgent",
	"requestReceivedTimestamp", "stageTimestamp", "annotations",
}

// maxAuditIDInKey is the longest auditID used as it is in a key; a longer
// one, or one that is not printable ASCII (a client may set it with the
// Audit-ID header), is hashed.
const maxAuditIDInKey = 128

// handleK8sAudit serves POST /v1/k8s/audit.
func (s *Server) handleK8sAudit(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.fail(w, r, errorf(http.StatusUnsupportedMediaType, "content_type", "send an audit.k8s.io/v1 EventList as Content-Type: application/json"))
		return
	}
	source, err := s.authenticate(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body, bodyHeld, err := s.readBody(w, r, source)
	defer bodyHeld.release()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := k8sItemCount(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	release, err := s.admit(source, n, n, "events")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	evs, err := k8sEvents(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	results := []eventResult{}
	if len(evs) > 0 {
		results, err = s.appendBatch(r.Context(), source, evs, appendOptions{truncate: true, notIJSON: true, keep: k8sKeep, endpoint: "k8s"})
		if err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// k8sEvents splits an EventList into its events, each with its key. The
// items are split as the envelope is read (one pass), and the first item
// that is not an audit event refuses the list once the envelope's syntax
// is checked to its end.
func k8sEvents(body []byte) ([]ingestEvent, error) {
	var kind, apiVersion string
	var evs []ingestEvent
	var itemErr error
	seen := map[string]bool{}
	err := membersScan(body, func(name []byte, i int) (int, error) {
		if seen[string(name)] {
			return 0, fmt.Errorf("duplicate member name %q", name)
		}
		seen[string(name)] = true
		if string(name) == "items" && body[i] == '[' {
			// The array's bracket is one level of the envelope's
			// nesting; its items nest in the rest.
			return arrayScan(body, i, maxNesting-1, func(item []byte) error {
				n := len(evs)
				auditID, stage, err := k8sEventID(item)
				if err != nil {
					if itemErr == nil {
						itemErr = errorf(http.StatusBadRequest, "bad_request", "item %d of the EventList: %v", n+1, err)
					}
					return nil
				}
				evs = append(evs, ingestEvent{raw: item, key: k8sKey(auditID, stage), unit: k8sUnit, pos: n})
				return nil
			})
		}
		end, err := skipValue(body, i, maxNesting)
		if err != nil {
			return 0, fmt.Errorf("member %q: %w", name, err)
		}
		value := body[i:end]
		switch string(name) {
		case "kind":
			kind, err = stringMember("kind", value)
		case "apiVersion":
			apiVersion, err = stringMember("apiVersion", value)
		case "items":
			if string(value) != "null" {
				err = fmt.Errorf("member %q: %w: not an array", name, errJSONSyntax)
			}
		default:
			if !json.Valid(value) {
				err = fmt.Errorf("%q: %w", name, errJSONSyntax)
			}
		}
		return end, err
	})
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "bad_json", "the EventList: %v", err)
	}
	if kind != "EventList" || apiVersion != k8sAPIVersion {
		return nil, errorf(http.StatusBadRequest, "bad_request", "the body is kind %q, apiVersion %q: this endpoint takes a kind \"EventList\", apiVersion %q from the kube-apiserver's audit webhook", kind, apiVersion, k8sAPIVersion)
	}
	if itemErr != nil {
		return nil, itemErr
	}
	return evs, nil
}

// k8sItemCount counts the items of an EventList without splitting them or
// allocating per item. When k8sEvents accepts a body, the count is the
// number of its events; a body whose JSON structure is broken is refused
// (400), as k8sEvents would refuse it.
func k8sItemCount(body []byte) (int, error) {
	n := 0
	err := membersScan(body, func(name []byte, i int) (int, error) {
		if string(name) == "items" && body[i] == '[' {
			return arrayScan(body, i, maxNesting-1, func([]byte) error {
				n++
				return nil
			})
		}
		end, err := skipValue(body, i, maxNesting)
		if err != nil {
			return 0, fmt.Errorf("member %q: %w", name, err)
		}
		if string(name) == "items" && string(body[i:end]) != "null" {
			return 0, fmt.Errorf("member %q: %w: not an array", name, errJSONSyntax)
		}
		return end, nil
	})
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "bad_json", "the EventList: %v", err)
	}
	return n, nil
}

// errFound stops objectMembers early.
var errFound = errors.New("found")

// k8sEventID returns an audit event's auditID and stage. The apiserver
// writes them first, so the scan stops early; the canonicalizer checks the
// rest of the item.
func k8sEventID(item []byte) (auditID, stage string, err error) {
	err = rawObjectMembers(item, maxNesting, func(name, value []byte) error {
		var err error
		switch string(name) {
		case "auditID":
			auditID, err = stringMember("auditID", value)
		case "stage":
			stage, err = stageMember(value)
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

// k8sStages are the stages the apiserver writes: an event's stage is one
// of these strings, not a string of its own.
var k8sStages = []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}

// stageMember is stringMember for "stage", with the apiserver's stages
// shared.
func stageMember(value []byte) (string, error) {
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		for _, s := range k8sStages {
			if string(value[1:len(value)-1]) == s {
				return s, nil
			}
		}
	}
	return stringMember("stage", value)
}

func validStage(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// k8sKey is the idempotency key of an audit event: "k8s:<auditID>/<stage>",
// or "k8s:sha256:<hex>/<stage>" when the auditID is not a short printable
// ASCII string.
func k8sKey(auditID, stage string) string {
	if len(auditID) <= maxAuditIDInKey && printableASCII(auditID) && !strings.HasPrefix(auditID, "sha256:") {
		return "k8s:" + auditID + "/" + stage
	}
	h := sha256.Sum256([]byte(auditID))
	return "k8s:sha256:" + hex.EncodeToString(h[:]) + "/" + stage
}
