package log

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/tidemark/tidemark/checkpoint"
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
	var items [][]byte
	err := arrayElements(b, maxNesting, func(item []byte) error {
		items = append(items, item)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return items, nil
}

// countJSONArray counts the elements of a JSON array without allocating:
// it accepts what splitJSONArray accepts, and counts what it would return.
func countJSONArray(b []byte) (int, error) {
	n := 0
	err := arrayElements(b, maxNesting, func([]byte) error {
		n++
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// arrayElements calls fn with each element of the JSON array b, in order;
// fn returns an error to stop. Brackets nest at most depth deep (skipValue).
func arrayElements(b []byte, depth int, fn func(item []byte) error) error {
	i, err := arrayScan(b, skipSpace(b, 0), depth, fn)
	if err != nil {
		return err
	}
	if i = skipSpace(b, i); i != len(b) {
		return fmt.Errorf("%w: data after the array at byte %d", errJSONSyntax, i)
	}
	return nil
}

// arrayScan calls fn with each element of the JSON array that starts at
// b[i], in order, and returns the position just past the array. Its
// elements' brackets nest at most depth deep (skipValue).
func arrayScan(b []byte, i, depth int, fn func(item []byte) error) (int, error) {
	if i >= len(b) || b[i] != '[' {
		return 0, fmt.Errorf("%w: not an array", errJSONSyntax)
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for n := 1; ; n++ {
		end, err := skipValue(b, i, depth)
		if err != nil {
			return 0, fmt.Errorf("element %d: %w", n, err)
		}
		if err := fn(b[i:end]); err != nil {
			return 0, err
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return 0, fmt.Errorf("%w: the array is not closed", errJSONSyntax)
		}
		if b[i] == ']' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, fmt.Errorf("%w: after element %d, want ',' or ']' at byte %d", errJSONSyntax, n, i)
		}
		i = skipSpace(b, i+1)
	}
}

// objectMembers calls fn for each member of the JSON object b, in order,
// with the member's name (decoded) and its value (raw bytes); fn returns an
// error to stop. Like splitJSONArray it checks the object's syntax, not its
// values'.
func objectMembers(b []byte, fn func(name string, value []byte) error) error {
	return rawObjectMembers(b, maxNesting, func(name, value []byte) error {
		return fn(string(name), value)
	})
}

// rawObjectMembers is objectMembers with the name as bytes: the sender's
// own bytes when it has no escape (no allocation), else decoded. Brackets
// nest at most depth deep (skipValue).
func rawObjectMembers(b []byte, depth int, fn func(name, value []byte) error) error {
	return membersScan(b, func(name []byte, i int) (int, error) {
		end, err := skipValue(b, i, depth)
		if err != nil {
			return 0, fmt.Errorf("member %q: %w", name, err)
		}
		return end, fn(name, b[i:end])
	})
}

// membersScan walks the members of the JSON object b, in order, checking
// the object's own syntax: for each member, value gets its name (as in
// rawObjectMembers) and the position of its value in b, reads the value
// (skipValue, or a scan of its own), and returns the position just past it;
// an error stops the walk.
func membersScan(b []byte, value func(name []byte, i int) (end int, err error)) error {
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
			// A name is a string: no brackets, any depth does.
			end, err := skipValue(b, i, 1)
			if err != nil {
				return err
			}
			name := b[i+1 : end-1]
			if bytes.IndexByte(name, '\\') >= 0 {
				var s string
				if err := json.Unmarshal(b[i:end], &s); err != nil {
					return fmt.Errorf("%w: member name at byte %d: %v", errJSONSyntax, i, err)
				}
				name = []byte(s)
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return fmt.Errorf("%w: want ':' at byte %d", errJSONSyntax, i)
			}
			i = skipSpace(b, i+1)
			if i >= len(b) {
				return fmt.Errorf("member %q: %w: unexpected end", name, errJSONSyntax)
			}
			if i, err = value(name, i); err != nil {
				return err
			}
			i = skipSpace(b, i)
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

// Nesting bounds for skipValue: maxNesting is the canonicalizer's (an
// event nested deeper is refused anyway); anyNesting follows brackets as
// deep as they go, for counting bodies whose decoder allows more.
const (
	maxNesting = checkpoint.MaxJSONDepth
	anyNesting = math.MaxInt
)

// skipValue returns the index just past the JSON value that starts at b[i].
// It follows strings (with their escapes) and brackets exactly, so that the
// end it finds is the end a full parser would find; the contents of strings
// and scalars it only delimits, leaving their checks to the canonicalizer
// (or json.Valid). Brackets nested more than depth deep are refused; past
// 64 deep only their count is followed, not which kind closes which.
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, fmt.Errorf("%w: unexpected end", errJSONSyntax)
	}
	open := 0
	var stack [64]byte // the kinds of the innermost open brackets, up to 64 deep
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
			if open == depth {
				return 0, fmt.Errorf("%w: nested more than %d deep", errJSONSyntax, depth)
			}
			if open < len(stack) {
				stack[open] = c
			}
			open++
			i++
		case '}', ']':
			if open == 0 || open <= len(stack) && (c == '}') != (stack[open-1] == '{') {
				return 0, fmt.Errorf("%w: unexpected %q at byte %d", errJSONSyntax, c, i)
			}
			open--
			i++
		case ',', ':', ' ', '\t', '\n', '\r':
			if open == 0 {
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
		if open == 0 {
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

// shipperArrayLen counts the events of a /v1/events body that is a JSON
// array, or refuses it as shipperArray would.
func shipperArrayLen(body []byte) (int, error) {
	n, err := countJSONArray(body)
	if err != nil {
		return 0, shipperArrayError(err)
	}
	return n, nil
}

func shipperArrayError(err error) error {
	return errorf(http.StatusBadRequest, "bad_json", "the JSON array: %v (a batch is an array of I-JSON objects, RFC 7493)", err)
}

// shipperArray turns a /v1/events body with Content-Type application/json
// that is a JSON array into its events, or refuses it.
func shipperArray(body []byte) ([][]byte, error) {
	raws, err := splitJSONArray(body)
	if err != nil {
		return nil, shipperArrayError(err)
	}
	if len(raws) == 0 {
		return nil, errorf(http.StatusBadRequest, "bad_request", "the JSON array has no events")
	}
	return raws, nil
}
