package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// MaxLeafSize is the largest entry a Tessera log accepts, and so the largest
// leaf, event leaf or raw, that a Tidemark log holds.
const MaxLeafSize = 65535

// LeafVersion is the value of "v" in the leaves this package writes.
const LeafVersion = 1

// ReceivedFormat is the layout of a leaf's "received" time: RFC 3339 in UTC
// with exactly nine fractional digits, so that every leaf of a log has the
// same shape and sorts as text.
const ReceivedFormat = "2006-01-02T15:04:05.000000000Z"

// ErrLeaf is wrapped by the errors ParseLeaf returns.
var ErrLeaf = errors.New("not a canonical event leaf")

// ErrNotObject is wrapped when an event is valid I-JSON but not an object.
var ErrNotObject = errors.New("an event must be a JSON object")

// A Leaf is what the log stores for one audit event: the event as the sender
// gave it, in canonical JSON, wrapped with what the server vouches for.
//
// Its bytes are the canonical JSON (RFC 8785) of
//
//	{"event":{...},"idempotency_key":"...","received":"...","source":"...","v":1}
//
// with "idempotency_key" present only when the sender gave an
// Idempotency-Key header. The server stamps "received" (its clock) and
// "source" (the name of the token that authenticated the request); it never
// takes either from the sender. Because the bytes are canonical, an event
// always hashes the same way, and a verifier can re-derive them.
type Leaf struct {
	Received       time.Time
	Source         string
	IdempotencyKey string
	// Event is the canonical JSON of the event object, as returned by
	// CanonicalEvent.
	Event []byte
}

// An Event is a sender's event after CanonicalEvent: its canonical bytes and
// the fields the log itself needs.
type Event struct {
	Canonical []byte
	// ID is the event's "id" member when it is a non-empty string or a
	// number; zero otherwise. The log deduplicates retries on it.
	ID EventID
}

// An EventID is the "id" member of an event: a string, or a number held as
// its canonical text. {"id":1} and {"id":"1"} are different ids.
type EventID struct {
	Value  string
	Number bool
}

// IsZero reports whether the event has no id.
func (id EventID) IsZero() bool { return id.Value == "" }

// Key returns a text that names the id and its type: "s:" or "n:" followed
// by the value, "" for no id.
func (id EventID) Key() string {
	switch {
	case id.Value == "":
		return ""
	case id.Number:
		return "n:" + id.Value
	}
	return "s:" + id.Value
}

// CanonicalEvent checks that in is an I-JSON object (see Canonicalize) and
// returns its canonical form and its id.
func CanonicalEvent(in []byte) (Event, error) {
	out, id, err := appendCanonicalEvent(make([]byte, 0, len(in)), in)
	if err != nil {
		return Event{}, err
	}
	return Event{Canonical: out, ID: id}, nil
}

func appendCanonicalEvent(dst, in []byte) ([]byte, EventID, error) {
	if t := bytes.TrimLeft(in, " \t\r\n"); len(t) > 0 && t[0] != '{' {
		if _, err := Canonicalize(in); err != nil {
			return dst, EventID{}, err
		}
		return dst, EventID{}, ErrNotObject
	}
	p := getParser(in)
	defer putParser(p)
	members, err := canonicalObject(p)
	if err != nil {
		return dst, EventID{}, err
	}
	var id EventID
	for _, m := range members {
		if string(m.name) != "id" {
			continue
		}
		if c := m.value[0]; c == '-' || (c >= '0' && c <= '9') {
			id = EventID{Value: string(m.value), Number: true}
		} else if s, err := stringValue(m.value); err == nil {
			id = EventID{Value: s}
		}
	}
	return appendMembers(dst, members), id, nil
}

// AppendEventLeaf checks and canonicalizes an event as CanonicalEvent does,
// straight into the leaf that wraps it, appended to dst. It returns the leaf,
// the event's id (see Event.ID) and the length of the canonical event.
func AppendEventLeaf(dst, event []byte, received time.Time, source, idempotencyKey string) (leaf []byte, id EventID, eventLen int, err error) {
	start := len(dst)
	dst = append(dst, `{"event":`...)
	evStart := len(dst)
	dst, id, err = appendCanonicalEvent(dst, event)
	if err != nil {
		return dst[:start], EventID{}, 0, err
	}
	eventLen = len(dst) - evStart
	dst = appendLeafTail(dst, Leaf{Received: received, Source: source, IdempotencyKey: idempotencyKey})
	return dst, id, eventLen, nil
}

// LeafOverhead returns how many bytes a leaf adds around its event, so that
// MaxLeafSize - LeafOverhead(l) is the room an event has.
func LeafOverhead(source, idempotencyKey string) int {
	return len(AppendLeaf(nil, Leaf{Source: source, IdempotencyKey: idempotencyKey}))
}

// AppendLeaf appends the canonical bytes of l to dst. l.Event must be
// canonical (from CanonicalEvent); it is copied as it is.
func AppendLeaf(dst []byte, l Leaf) []byte {
	dst = append(dst, `{"event":`...)
	dst = append(dst, l.Event...)
	return appendLeafTail(dst, l)
}

// appendLeafTail appends what follows the event in a leaf.
func appendLeafTail(dst []byte, l Leaf) []byte {
	if l.IdempotencyKey != "" {
		dst = append(dst, `,"idempotency_key":`...)
		dst = appendJSONString(dst, l.IdempotencyKey)
	}
	dst = append(dst, `,"received":"`...)
	dst = appendReceived(dst, l.Received)
	dst = append(dst, `","source":`...)
	dst = appendJSONString(dst, l.Source)
	dst = append(dst, `,"v":1}`...)
	return dst
}

// appendReceived appends t in ReceivedFormat, as t.UTC().AppendFormat
// does, without reading the layout for every leaf.
func appendReceived(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, ReceivedFormat)
	}
	hour, minute, sec := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, t.Nanosecond(), 9)
	return append(dst, 'Z')
}

// appendDigits appends v (0 <= v < 10^width) in exactly width digits.
func appendDigits(dst []byte, v, width int) []byte {
	dst = append(dst, "000000000"[:width]...)
	for i := len(dst) - 1; v > 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	return dst
}

// ParseLeaf parses an event leaf strictly: the bytes must be exactly the
// canonical leaf that AppendLeaf would write for the values they hold.
func ParseLeaf(b []byte) (Leaf, error) {
	if !utf8.Valid(b) {
		return Leaf{}, fmt.Errorf("%w: invalid UTF-8", ErrLeaf)
	}
	p := getParser(b)
	defer putParser(p)
	members, err := canonicalObject(p)
	if err != nil {
		return Leaf{}, fmt.Errorf("%w: %w", ErrLeaf, err)
	}
	var l Leaf
	seen := map[string]bool{}
	for _, m := range members {
		seen[string(m.name)] = true
		switch string(m.name) {
		case "v":
			if string(m.value) != "1" {
				return Leaf{}, fmt.Errorf("%w: unsupported version %s", ErrLeaf, m.value)
			}
		case "event":
			if m.value[0] != '{' {
				return Leaf{}, fmt.Errorf("%w: event is not an object", ErrLeaf)
			}
			l.Event = bytes.Clone(m.value) // m.value lives in the pooled parser
		case "received":
			s, err := stringValue(m.value)
			if err != nil {
				return Leaf{}, fmt.Errorf("%w: received: %w", ErrLeaf, err)
			}
			t, err := time.Parse(ReceivedFormat, s)
			if err != nil || t.Format(ReceivedFormat) != s {
				return Leaf{}, fmt.Errorf("%w: received %q is not in the form %s", ErrLeaf, s, ReceivedFormat)
			}
			l.Received = t
		case "source":
			if l.Source, err = stringValue(m.value); err != nil {
				return Leaf{}, fmt.Errorf("%w: source: %w", ErrLeaf, err)
			}
		case "idempotency_key":
			if l.IdempotencyKey, err = stringValue(m.value); err != nil {
				return Leaf{}, fmt.Errorf("%w: idempotency_key: %w", ErrLeaf, err)
			}
			if l.IdempotencyKey == "" {
				return Leaf{}, fmt.Errorf("%w: empty idempotency_key", ErrLeaf)
			}
		default:
			return Leaf{}, fmt.Errorf("%w: unknown member %q", ErrLeaf, m.name)
		}
	}
	for _, name := range []string{"v", "event", "received", "source"} {
		if !seen[name] {
			return Leaf{}, fmt.Errorf("%w: no %q member", ErrLeaf, name)
		}
	}
	if !bytes.Equal(AppendLeaf(nil, l), b) {
		return Leaf{}, fmt.Errorf("%w: not in canonical form", ErrLeaf)
	}
	return l, nil
}

func stringValue(v []byte) (string, error) {
	if len(v) == 0 || v[0] != '"' {
		return "", errors.New("not a string")
	}
	// A canonical string without escapes is its value between quotes.
	if len(v) >= 2 && v[len(v)-1] == '"' && bytes.IndexByte(v[1:len(v)-1], '\\') < 0 && bytes.IndexByte(v[1:len(v)-1], '"') < 0 && plainString(v[1:len(v)-1]) {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", err
	}
	return s, nil
}

// plainString reports whether s is valid UTF-8 without control
// characters: a JSON string's contents that need no decoding.
func plainString(s []byte) bool {
	for _, c := range s {
		if c < 0x20 {
			return false
		}
	}
	return utf8.Valid(s)
}

// ClaimsEventLeaf reports whether b looks like a leaf the log writes (see
// KindOf): a JSON object with a "v" member and an "event", "commitment" or
// "erasure" member, canonical or not. The log refuses such bodies on its raw
// endpoint, so that nobody can forge a leaf the server seems to have
// stamped, and auditors flag any that is not canonical.
func ClaimsEventLeaf(b []byte) bool { return claimedKind(b) != KindRaw }

// claimedKind is KindOf without its fast path: it reads the names of the
// top-level members.
func claimedKind(b []byte) LeafKind {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return KindRaw
	}
	// A member named "event", "commitment" or "erasure" is spelled out,
	// or escaped with \u: without either there is none, and no need to
	// parse.
	if !bytes.Contains(t, []byte("event")) && !bytes.Contains(t, []byte("commitment")) &&
		!bytes.Contains(t, []byte("erasure")) && !bytes.Contains(t, []byte(`\u`)) {
		return KindRaw
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(t, &m); err != nil {
		// json.Unmarshal also refuses valid JSON nested deeper than
		// 10000, which other parsers (JSON.parse) read: look at the
		// member names with the tokenizer, which has no such limit.
		return kindByTokens(t)
	}
	names := make(map[string]bool, 4)
	for _, n := range []string{"v", "event", "commitment", "erasure"} {
		_, names[n] = m[n]
	}
	return kindOfNames(names)
}

// kindOfNames says which kind an object with these top-level member names
// claims to be.
func kindOfNames(names map[string]bool) LeafKind {
	switch {
	case !names["v"]:
		return KindRaw
	case names["event"]:
		return KindEvent
	case names["commitment"]:
		return KindCommitment
	case names["erasure"]:
		return KindErasure
	}
	return KindRaw
}

// kindByTokens is claimedKind for a body json.Unmarshal refused: the kind
// the names of the top-level object's members claim, read token by token.
// A body that is not JSON claims nothing.
func kindByTokens(t []byte) LeafKind {
	d := json.NewDecoder(bytes.NewReader(t))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return KindRaw
	}
	depth, isName := 1, true
	names := map[string]bool{}
	for {
		tok, err := d.Token()
		if err != nil {
			return KindRaw
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			continue
		case json.Delim('}'), json.Delim(']'):
			depth--
			switch depth {
			case 0:
				if _, err := d.Token(); err != io.EOF {
					return KindRaw
				}
				return kindOfNames(names)
			case 1:
				isName = true // a member's value ended
			}
			continue
		}
		if depth > 1 {
			continue
		}
		if isName {
			if s, ok := tok.(string); ok {
				names[s] = true
			}
		}
		isName = !isName
	}
}
