package log

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Log shippers (syslog-ng's http() destination, Fluent Bit's http output,
// Vector's http sink) post to /v1/events in one of two shapes: NDJSON, one
// event a line, or one JSON array of events (Content-Type
// application/json). An array is a batch, answered like NDJSON; a single
// object is still one event. The helpers here split such bodies without
// decoding them: every event's bytes go on as the sender sent them, and the
// canonicalizer checks each one strictly.

// isJSONArray reports whether a body is a JSON array (its first byte after
// white space is '[').
func isJSONArray(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '['
}

// errJSONSyntax is wrapped by the splitting errors below.
var errJSONSyntax = errors.New("not valid JSON")

// splitJSONArray returns the elements of a JSON array, each as the bytes
// the sender sent. It checks the array's own syntax (brackets, commas,
// strings) but not the elements': the canonicalizer does that.
func splitJSONArray(b []byte) ([][]byte, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, fmt.Errorf("%w: not an array", errJSONSyntax)
	}
	i = skipSpace(b, i+1)
	var items [][]byte
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			end, err := skipValue(b, i)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", len(items)+1, err)
			}
			items = append(items, b[i:end])
			i = skipSpace(b, end)
			if i >= len(b) {
				return nil, fmt.Errorf("%w: the array is not closed", errJSONSyntax)
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return nil, fmt.Errorf("%w: after element %d, want ',' or ']' at byte %d", errJSONSyntax, len(items), i)
			}
			i = skipSpace(b, i+1)
		}
	}
	if i = skipSpace(b, i); i != len(b) {
		return nil, fmt.Errorf("%w: data after the array at byte %d", errJSONSyntax, i)
	}
	return items, nil
}

// objectMembers calls fn for each member of the JSON object b, in order,
// with the member's name (decoded) and its value (raw bytes); fn returns an
// error to stop. Like splitJSONArray it checks the object's syntax, not its
// values'.
func objectMembers(b []byte, fn func(name string, value []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return fmt.Errorf("%w: not an object", errJSONSyntax)
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return fmt.Errorf("%w: want a member name at byte %d", errJSONSyntax, i)
			}
			end, err := skipValue(b, i)
			if err != nil {
				return err
			}
			rawName := b[i+1 : end-1]
			name := string(rawName)
			if bytes.IndexByte(rawName, '\\') >= 0 {
				if err := json.Unmarshal(b[i:end], &name); err != nil {
					return fmt.Errorf("%w: member name at byte %d: %v", errJSONSyntax, i, err)
				}
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return fmt.Errorf("%w: want ':' at byte %d", errJSONSyntax, i)
			}
			i = skipSpace(b, i+1)
			end, err = skipValue(b, i)
			if err != nil {
				return fmt.Errorf("member %q: %w", name, err)
			}
			if err := fn(name, b[i:end]); err != nil {
				return err
			}
			i = skipSpace(b, end)
			if i >= len(b) {
				return fmt.Errorf("%w: the object is not closed", errJSONSyntax)
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return fmt.Errorf("%w: want ',' or '}' at byte %d", errJSONSyntax, i)
			}
			i = skipSpace(b, i+1)
		}
	}
	if i = skipSpace(b, i); i != len(b) {
		return fmt.Errorf("%w: data after the object at byte %d", errJSONSyntax, i)
	}
	return nil
}

// stringMember decodes a member value that must be a JSON string.
func stringMember(name string, value []byte) (string, error) {
	var s string
	if len(value) == 0 || value[0] != '"' {
		return "", fmt.Errorf("%q must be a string", name)
	}
	if bytes.IndexByte(value, '\\') < 0 {
		return string(value[1 : len(value)-1]), nil
	}
	if err := json.Unmarshal(value, &s); err != nil {
		return "", fmt.Errorf("%q: %w", name, err)
	}
	return s, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value that starts at b[i].
// It follows strings (with their escapes) and brackets exactly, so that the
// end it finds is the end a full parser would find; the contents of strings
// and scalars it only delimits, leaving their checks to the canonicalizer
// (or json.Valid).
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, fmt.Errorf("%w: unexpected end", errJSONSyntax)
	}
	depth := 0
	var stack [64]byte // the open brackets; deeper nesting is refused
	for {
		switch c := b[i]; c {
		case '"':
			// To the next quote that no backslash escapes. Most of a JSON
			// text is strings, so this is the fast path (IndexByte).
			i++
			for {
				q := bytes.IndexByte(b[i:], '"')
				if q < 0 {
					return 0, fmt.Errorf("%w: unterminated string", errJSONSyntax)
				}
				i += q + 1
				bs := 0
				for j := i - 2; j >= 0 && b[j] == '\\'; j-- {
					bs++
				}
				if bs%2 == 0 {
					break
				}
			}
		case '{', '[':
			if depth == len(stack) {
				return 0, fmt.Errorf("%w: nested more than %d deep", errJSONSyntax, len(stack))
			}
			stack[depth] = c
			depth++
			i++
		case '}', ']':
			if depth == 0 || (c == '}') != (stack[depth-1] == '{') {
				return 0, fmt.Errorf("%w: unexpected %q at byte %d", errJSONSyntax, c, i)
			}
			depth--
			i++
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return 0, fmt.Errorf("%w: want a value at byte %d", errJSONSyntax, i)
			}
			i++
		default:
			// A number or a literal: runs to the next delimiter.
			start := i
			for i < len(b) && !isDelim(b[i]) {
				i++
			}
			if i == start {
				return 0, fmt.Errorf("%w: unexpected %q at byte %d", errJSONSyntax, b[i], i)
			}
		}
		if depth == 0 {
			return i, nil
		}
		if i >= len(b) {
			return 0, fmt.Errorf("%w: unexpected end", errJSONSyntax)
		}
	}
}

func isDelim(c byte) bool {
	switch c {
	case ',', ':', ']', '}', ' ', '\t', '\r', '\n', '"', '{', '[':
		return true
	}
	return false
}

// shipperArray turns a /v1/events body with Content-Type application/json
// that is a JSON array into its events, or refuses it.
func shipperArray(body []byte) ([][]byte, error) {
	raws, err := splitJSONArray(body)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "bad_json", "the JSON array: %v (a batch is an array of I-JSON objects, RFC 7493)", err)
	}
	if len(raws) == 0 {
		return nil, errorf(http.StatusBadRequest, "bad_request", "the JSON array has no events")
	}
	return raws, nil
}
