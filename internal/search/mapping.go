package search

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// A Mapping tells the index where the fields are in events of shapes it
// does not know. A mapping file has one rule a line, a field and a JSON
// pointer (RFC 6901) into the event:
//
//	# Okta System Log
//	actor    /actor/alternateId
//	action   /eventType
//	resource /target/0/alternateId
//	outcome  /outcome/result
//
// A field may have several pointers: the first that names a non-empty
// string wins, and the built-in shapes come after them all (see
// [Extract]). Blank lines and lines starting with '#' are ignored.
type Mapping struct {
	rules []mappingRule
}

type mappingRule struct {
	field string
	path  []string
}

// ParseMapping parses a mapping file; errors name the line.
func ParseMapping(b []byte) (*Mapping, error) {
	m := &Mapping{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want a field and a JSON pointer (\"actor /user/email\"), got %q", n, line)
		}
		switch f[0] {
		case "actor", "action", "resource", "outcome":
		default:
			return nil, fmt.Errorf("line %d: unknown field %q: the fields are actor, action, resource and outcome", n, f[0])
		}
		path, err := parsePointer(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		m.rules = append(m.rules, mappingRule{f[0], path})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// parsePointer splits a JSON pointer into its reference tokens.
func parsePointer(p string) ([]string, error) {
	if p == "" || p[0] != '/' {
		return nil, fmt.Errorf("%q is not a JSON pointer: it starts with '/' (\"/user/email\")", p)
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(t, "~0", ""), "~1", ""), "~") {
			return nil, fmt.Errorf("%q: '~' is written ~0 and '/' ~1 in a JSON pointer", p)
		}
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

// first is the first string the field's pointers name in doc, or "".
func (m *Mapping) first(doc map[string]any, field string) string {
	for _, r := range m.rules {
		if r.field != field {
			continue
		}
		if s := pointerString(doc, r.path); s != "" {
			return s
		}
	}
	return ""
}

// pointerString follows a JSON pointer through objects and arrays.
func pointerString(v any, path []string) string {
	for _, t := range path {
		switch c := v.(type) {
		case map[string]any:
			v = c[t]
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(c) || (len(t) > 1 && t[0] == '0') {
				return ""
			}
			v = c[i]
		default:
			return ""
		}
	}
	s, _ := v.(string)
	return s
}
