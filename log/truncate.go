package log

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tidemark/tidemark/checkpoint"
)

// A leaf holds at most checkpoint.MaxLeafSize bytes. The ingest paths whose
// senders cannot split or shrink an event (the kube-apiserver's webhook
// drops a whole batch it cannot deliver; OTLP exporters cannot shrink a
// record) log an event that is too large as a truncated stand-in rather
// than refuse it:
//
//	{"tidemark_truncated":true,
//	 "tidemark_original_sha256":"<hex SHA-256 of the event's canonical JSON>",
//	 "tidemark_original_size":<bytes of the event's canonical JSON>,
//	 "tidemark_omitted":["<name of a member left out>",...],
//	 ...the members of the event that fit, each whole, as sent}
//
// Members are kept whole or not at all: the ones the path names first (for
// Kubernetes auditID, stage, verb, user, objectRef, ...), then the others
// from the smallest, as long as they fit. So every value in the stand-in is
// the sender's own, and anyone holding the original event can check it
// against the hash. "tidemark_omitted" is left out when even the names do
// not fit. Only the server writes "tidemark_truncated": an event that has it
// is refused (checkReservedMembers).
//
// The Kubernetes path also logs a stand-in for an audit event that is not
// I-JSON, rather than refuse the EventList (which the apiserver would drop,
// with every other event in it): the apiserver copies a client's PATCH
// body verbatim into requestObject, and the body may repeat a member name
// or hold an integer a double cannot, which the apiserver accepts. Such a
// stand-in has "tidemark_not_ijson":true; its hash and size are of the
// event's bytes as sent (it has no canonical JSON), and it keeps each
// top-level member that is I-JSON by itself, and omits the others (a name
// that appears twice is omitted with every value it has).

// truncatedMarker is the member that marks a stand-in.
const truncatedMarker = "tidemark_truncated"

// notIJSONMarker marks a stand-in for an event that is not I-JSON.
const notIJSONMarker = "tidemark_not_ijson"

// A standInMember is one top-level member of the event a stand-in stands
// for.
type standInMember struct {
	name, value []byte // canonical bytes of the name (quoted) and value; value nil: never kept
	pri         int    // position in keep, or len(keep)
}

// truncatedEvent returns the stand-in for the canonical event canon, whose
// canonical JSON must fit in room bytes. The result is I-JSON, not
// necessarily canonical (AppendEventLeaf canonicalizes it), and never
// aliases canon.
func truncatedEvent(canon []byte, room int, keep []string) ([]byte, error) {
	var members []standInMember
	err := objectMembers(canon, func(name string, value []byte) error {
		members = append(members, newStandInMember(name, value, keep))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("couldn't truncate the event: %w", err)
	}
	return buildStandIn(members, canon, false, room)
}

// notIJSONEvent returns the stand-in for raw, an event that is a JSON
// object but not I-JSON: its top-level members that are I-JSON each by
// itself, in canonical form, as many as fit in room bytes.
func notIJSONEvent(raw []byte, room int, keep []string) ([]byte, error) {
	var members []standInMember
	var names []string
	count := map[string]int{}
	err := objectMembers(raw, func(name string, value []byte) error {
		count[name]++
		names = append(names, name)
		// The member alone, as an object, canonicalized: its name and
		// value must each be I-JSON.
		one := make([]byte, 0, len(name)+len(value)+8)
		one = append(appendQuoted(append(one, '{'), name), ':')
		one = append(append(one, value...), '}')
		q := appendQuoted(nil, strings.ToValidUTF8(name, "\uFFFD"))
		ev, err := checkpoint.CanonicalEvent(one)
		// {"name":value} in canonical form starts with the name quoted as
		// appendQuoted quotes it (RFC 8785's string form).
		if err != nil || !bytes.HasPrefix(ev.Canonical[1:], append(q, ':')) {
			members = append(members, standInMember{name: q, pri: len(keep)})
			return nil
		}
		members = append(members, standInMember{name: q, value: ev.Canonical[len(q)+2 : len(ev.Canonical)-1], pri: keepIndex(keep, name)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("couldn't make a stand-in for the event: %w", err)
	}
	// A name that appears twice is ambiguous: none of its values is kept,
	// and it is listed as omitted once.
	out := members[:0]
	listed := map[string]bool{}
	for i, m := range members {
		if count[names[i]] > 1 {
			if listed[names[i]] {
				continue
			}
			listed[names[i]] = true
			m.value = nil
		}
		out = append(out, m)
	}
	members = out
	return buildStandIn(members, raw, true, room)
}

func keepIndex(keep []string, name string) int {
	if i := slices.Index(keep, name); i >= 0 {
		return i
	}
	return len(keep)
}

func newStandInMember(name string, value []byte, keep []string) standInMember {
	return standInMember{name: appendQuoted(nil, name), value: value, pri: keepIndex(keep, name)}
}

// isStandInName reports whether name is one of the stand-in's own members:
// a sender's member of that name is never kept, and is listed as omitted.
func isStandInName(name []byte) bool {
	switch string(name) {
	case `"` + truncatedMarker + `"`, `"tidemark_original_sha256"`, `"tidemark_original_size"`, `"tidemark_omitted"`, `"` + notIJSONMarker + `"`:
		return true
	}
	return false
}

// buildStandIn writes the stand-in for original (the event's canonical
// JSON, or its bytes as sent when notIJSON) from its members, within room
// bytes of canonical JSON.
func buildStandIn(members []standInMember, original []byte, notIJSON bool, room int) ([]byte, error) {
	sum := sha256.Sum256(original)
	out := make([]byte, 0, room)
	if notIJSON {
		out = append(out, `{"`+notIJSONMarker+`":true,"tidemark_original_sha256":"`...)
	} else {
		out = append(out, `{"tidemark_original_sha256":"`...)
	}
	out = hex.AppendEncode(out, sum[:])
	out = append(out, `","tidemark_original_size":`...)
	out = strconv.AppendInt(out, int64(len(original)), 10)
	out = append(out, `,"tidemark_truncated":true`...)
	// Sizes in canonical form: each kept member adds ,"name":value; the
	// omitted list ,"tidemark_omitted":[...] holds the other names, with a
	// comma between two.
	listSize := func(names, nameBytes int) int {
		return len(`,"tidemark_omitted":[]`) + nameBytes + max(names-1, 0)
	}
	omitted, omittedBytes := len(members), 0
	for _, m := range members {
		omittedBytes += len(m.name)
	}
	used := len(out) + 1 // the closing brace
	withList := used+listSize(omitted, omittedBytes) <= room
	if used > room {
		return nil, errors.New("couldn't truncate the event: not even the marker fits")
	}
	order := make([]int, len(members))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ma, mb := members[a], members[b]
		if c := cmp.Compare(ma.pri, mb.pri); c != 0 {
			return c
		}
		return cmp.Compare(len(ma.name)+len(ma.value), len(mb.name)+len(mb.value))
	})
	kept := make([]bool, len(members))
	for _, i := range order {
		m := members[i]
		if m.value == nil || isStandInName(m.name) {
			continue
		}
		// The size with m kept, against the size without.
		after := used + 1 + len(m.name) + 1 + len(m.value)
		if withList {
			after += listSize(omitted-1, omittedBytes-len(m.name))
		}
		if after <= room {
			used += 1 + len(m.name) + 1 + len(m.value)
			omitted, omittedBytes = omitted-1, omittedBytes-len(m.name)
			kept[i] = true
		}
	}
	for i, m := range members {
		if kept[i] {
			out = append(out, ',')
			out = append(out, m.name...)
			out = append(out, ':')
			out = append(out, m.value...)
		}
	}
	if withList {
		out = append(out, `,"tidemark_omitted":[`...)
		first := true
		for i, m := range members {
			if !kept[i] {
				if !first {
					out = append(out, ',')
				}
				first = false
				out = append(out, m.name...)
			}
		}
		out = append(out, ']')
	}
	return append(out, '}'), nil
}

// appendQuoted appends name as a JSON string in the canonical form
// (RFC 8785): only '"', '\\' and control characters escaped.
func appendQuoted(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\b':
			dst = append(dst, `\b`...)
		case c == '\f':
			dst = append(dst, `\f`...)
		case c == '\n':
			dst = append(dst, `\n`...)
		case c == '\r':
			dst = append(dst, `\r`...)
		case c == '\t':
			dst = append(dst, `\t`...)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// checkReservedMembers refuses a sender's event that carries the marker of
// a truncated stand-in, which only the server writes.
func checkReservedMembers(canon []byte) error {
	// Canonical JSON spells the name out, and '_' is rare in JSON text, so
	// this finds it or rules it out fast.
	if !bytes.Contains(canon, []byte(`_truncated":`)) {
		return nil
	}
	return objectMembers(canon, func(name string, _ []byte) error {
		if name == truncatedMarker {
			return fmt.Errorf("the member %q is reserved: only the log writes it, on the stand-in for an event too large for a leaf", truncatedMarker)
		}
		return nil
	})
}
