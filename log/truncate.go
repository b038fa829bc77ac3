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

// truncatedMarker is the member that marks a stand-in.
const truncatedMarker = "tidemark_truncated"

// truncatedEvent returns the stand-in for the canonical event canon, whose
// canonical JSON must fit in room bytes. The result is I-JSON, not
// necessarily canonical (AppendEventLeaf canonicalizes it), and never
// aliases canon.
func truncatedEvent(canon []byte, room int, keep []string) ([]byte, error) {
	sum := sha256.Sum256(canon)
	type member struct {
		name, value []byte // canonical bytes of the name (quoted) and value
		pri         int    // position in keep, or len(keep)
		reserved    bool   // a name of the stand-in's own: never kept
	}
	var members []member
	err := objectMembers(canon, func(name string, value []byte) error {
		q := appendQuoted(nil, name)
		pri := slices.Index(keep, name)
		if pri < 0 {
			pri = len(keep)
		}
		switch name {
		case truncatedMarker, "tidemark_original_sha256", "tidemark_original_size", "tidemark_omitted":
			// The stand-in's own names: the sender's member is left out,
			// and listed as omitted.
			members = append(members, member{name: q, reserved: true})
			return nil
		}
		members = append(members, member{name: q, value: value, pri: pri})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("couldn't truncate the event: %w", err)
	}
	out := make([]byte, 0, room)
	out = append(out, `{"tidemark_original_sha256":"`...)
	out = hex.AppendEncode(out, sum[:])
	out = append(out, `","tidemark_original_size":`...)
	out = strconv.AppendInt(out, int64(len(canon)), 10)
	out = append(out, `,"tidemark_truncated":true`...)
	// Sizes in canonical form: each kept member adds ,"name":value; the
	// omitted list ,"tidemark_omitted":[...] holds the other names.
	used := len(out) + 1 // the closing brace
	omittedSize := len(`,"tidemark_omitted":[]`) - 1
	for _, m := range members {
		omittedSize += len(m.name) + 1
	}
	withList := used+omittedSize <= room
	if withList {
		used += omittedSize
	}
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
		cost := 1 + len(m.name) + 1 + len(m.value)
		if withList {
			cost -= len(m.name) + 1 // no longer listed as omitted
		}
		if !m.reserved && used+cost <= room {
			used += cost
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
