package auditor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// A Rule raises an alert when an event leaf matches all its conditions.
//
// A rules file has one rule a line:
//
//	# name: condition && condition && ...
//	prod-secret-read: action == "secret.read" && resource ^= "prod/"
//	denied:           outcome == "denied"
//	root-actor:       actor.name == "root" && leaf.source != "ci"
//
// A name is letters, digits, '.', '_' and '-'. A condition is a field, an
// operator and a JSON string:
//
//	==  equals            !=  does not equal
//	^=  starts with       $=  ends with
//	*=  contains          ~=  matches the RE2 regular expression
//
// A field is a dotted path into the event ("action", "actor.name",
// "details.namespace"), or leaf.source, leaf.received or
// leaf.idempotency_key for what the server stamped. A string field compares
// by its value; a number, true, false or null by its JSON text ("3",
// "true"). A field that is missing, or an object or array, makes every
// condition on it false, "!=" included. Blank lines and lines starting with
// '#' are ignored; anything else that is not a rule is an error.
type Rule struct {
	Name  string
	Conds []Condition
	// needles are byte strings every matching canonical leaf contains: a
	// cheap test before the leaf is decoded.
	needles [][]byte
}

// A Condition is one "field op value" of a rule.
type Condition struct {
	Field []string // path
	Op    string
	Value string
	re    *regexp.Regexp
}

var ruleName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$`)

// ParseRules parses a rules file (see Rule). Errors name the line.
func ParseRules(b []byte) ([]Rule, error) {
	var rules []Rule
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := parseRule(line)
		if err != nil {
			return nil, fmt.Errorf("rules line %d: %w", n, err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("rules line %d: rule %q is defined twice", n, r.Name)
		}
		names[r.Name] = true
		rules = append(rules, r)
	}
	return rules, sc.Err()
}

func parseRule(line string) (Rule, error) {
	name, expr, ok := strings.Cut(line, ":")
	name = strings.TrimSpace(name)
	if !ok || !ruleName.MatchString(name) {
		return Rule{}, fmt.Errorf("want `name: field == \"value\" && ...`, with a name of letters, digits, '.', '_', '-'")
	}
	r := Rule{Name: name}
	rest := strings.TrimSpace(expr)
	for {
		c, tail, err := parseCondition(rest)
		if err != nil {
			return Rule{}, err
		}
		r.Conds = append(r.Conds, c)
		tail = strings.TrimSpace(tail)
		if tail == "" {
			break
		}
		after, ok := strings.CutPrefix(tail, "&&")
		if !ok {
			return Rule{}, fmt.Errorf("unexpected %q after a condition: join conditions with &&", tail)
		}
		rest = strings.TrimSpace(after)
	}
	for _, c := range r.Conds {
		if n := c.needle(); n != nil {
			r.needles = append(r.needles, n)
		}
	}
	return r, nil
}

var ops = []string{"==", "!=", "^=", "$=", "*=", "~="}

func parseCondition(s string) (Condition, string, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return strings.ContainsRune(" \t=!^$*~", r) })
	if i <= 0 {
		return Condition{}, "", fmt.Errorf("want a condition `field op \"value\"`, got %q", s)
	}
	field := s[:i]
	if !fieldName.MatchString(field) {
		return Condition{}, "", fmt.Errorf("bad field name %q", field)
	}
	rest := strings.TrimSpace(s[i:])
	var op string
	for _, o := range ops {
		if strings.HasPrefix(rest, o) {
			op = o
		}
	}
	if op == "" {
		return Condition{}, "", fmt.Errorf("after %q want one of %s", field, strings.Join(ops, " "))
	}
	rest = strings.TrimSpace(rest[len(op):])
	if !strings.HasPrefix(rest, `"`) {
		return Condition{}, "", fmt.Errorf("the value after %s %s must be a JSON string in double quotes", field, op)
	}
	dec := json.NewDecoder(strings.NewReader(rest))
	var v string
	if err := dec.Decode(&v); err != nil {
		return Condition{}, "", fmt.Errorf("the value after %s %s is not a JSON string: %v", field, op, err)
	}
	c := Condition{Field: strings.Split(field, "."), Op: op, Value: v}
	if op == "~=" {
		re, err := regexp.Compile(v)
		if err != nil {
			return Condition{}, "", fmt.Errorf("bad regular expression %q: %v", v, err)
		}
		c.re = re
	}
	return c, rest[dec.InputOffset():], nil
}

// needle returns bytes that the canonical leaf must contain for c to hold,
// or nil. Only for values whose canonical JSON text is the value itself.
func (c Condition) needle() []byte {
	if c.Op != "==" && c.Op != "^=" {
		return nil
	}
	for i := 0; i < len(c.Value); i++ {
		if ch := c.Value[i]; ch < 0x20 || ch >= 0x80 || ch == '"' || ch == '\\' {
			return nil
		}
	}
	if c.Op == "==" {
		return []byte(`"` + c.Value + `"`)
	}
	return []byte(`"` + c.Value)
}

func (c Condition) holds(got string) bool {
	switch c.Op {
	case "==":
		return got == c.Value
	case "!=":
		return got != c.Value
	case "^=":
		return strings.HasPrefix(got, c.Value)
	case "$=":
		return strings.HasSuffix(got, c.Value)
	case "*=":
		return strings.Contains(got, c.Value)
	case "~=":
		return c.re.MatchString(got)
	}
	return false
}

// matchRules returns the names of the rules an event leaf matches.
func matchRules(rules []Rule, leaf []byte) []string {
	var doc map[string]any
	var matched []string
	for _, r := range rules {
		skip := false
		for _, n := range r.needles {
			if !bytes.Contains(leaf, n) {
				skip = true
				break
			}
		}
		if skip {
			continue
		}
		if doc == nil {
			d := json.NewDecoder(bytes.NewReader(leaf))
			d.UseNumber()
			if d.Decode(&doc) != nil {
				return nil
			}
		}
		if r.matches(doc) {
			matched = append(matched, r.Name)
		}
	}
	return matched
}

func (r Rule) matches(leaf map[string]any) bool {
	for _, c := range r.Conds {
		var root any = leaf["event"]
		path := c.Field
		if path[0] == "leaf" && len(path) == 2 {
			root, path = leaf, path[1:]
		}
		got, ok := lookup(root, path)
		if !ok || !c.holds(got) {
			return false
		}
	}
	return true
}

func lookup(v any, path []string) (string, bool) {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[p]; !ok {
			return "", false
		}
	}
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		if v {
			return "true", true
		}
		return "false", true
	case nil:
		return "null", true
	}
	return "", false
}
