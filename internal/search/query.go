package search

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// A Match is one field's filter: a value, or with Prefix every value that
// starts with it (written "value*").
type Match struct {
	Value  string
	Prefix bool
}

func (m Match) set() bool { return m.Value != "" || m.Prefix }

// holds reports whether a field's full value passes the filter.
func (m Match) holds(v string) bool {
	if m.Prefix {
		return strings.HasPrefix(v, m.Value) && v != ""
	}
	return v == m.Value
}

// A Query is a search: every filter set must hold. Results come newest
// first.
type Query struct {
	Actor, Action, Resource, Source, Outcome Match
	// Since and Until bound the server's "received" time: Since <=
	// received < Until.
	Since, Until time.Time
	// Terms are the words of q: each must be in the event's string values
	// (a word ending in '*' is a prefix).
	Terms []string
	Limit int
	// Before, when set (HasBefore), limits results to indexes below it:
	// the cursor of the previous page.
	Before    uint64
	HasBefore bool
}

// Bounds of a query.
const (
	DefaultLimit = 50
	MaxLimit     = 500
	maxTerms     = 16
	maxQuery     = 1024
)

// ParseQuery reads a query from URL parameters: actor, action, resource,
// source, outcome (a trailing '*' for a prefix), since and until (RFC
// 3339), q (words), limit (1 to MaxLimit) and cursor (the "next" of the
// previous page). Errors say which parameter is wrong.
func ParseQuery(v url.Values) (Query, error) {
	var q Query
	for name, vals := range v {
		if len(vals) > 1 {
			return q, fmt.Errorf("%s is given %d times; give it once", name, len(vals))
		}
		if len(vals[0]) > maxQuery {
			return q, fmt.Errorf("%s is longer than %d bytes", name, maxQuery)
		}
		if !utf8.ValidString(vals[0]) {
			// Events are UTF-8: such a value names nothing, and a prefix
			// ending inside a character would pass Matches but not the
			// index's cut values.
			return q, fmt.Errorf("%s is not valid UTF-8", name)
		}
		switch name {
		case "actor", "action", "resource", "source", "outcome", "since", "until", "q", "limit", "cursor":
		default:
			return q, fmt.Errorf("unknown parameter %q: the filters are actor, action, resource, source, outcome, since, until, q, limit and cursor", name)
		}
	}
	for _, f := range []struct {
		name string
		m    *Match
	}{{"actor", &q.Actor}, {"action", &q.Action}, {"resource", &q.Resource}, {"source", &q.Source}, {"outcome", &q.Outcome}} {
		s := v.Get(f.name)
		if strings.HasSuffix(s, "*") {
			f.m.Prefix, s = true, strings.TrimSuffix(s, "*")
		}
		f.m.Value = s
	}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, fmt.Errorf("%s is not an RFC 3339 time (2026-11-24T09:00:00Z): %q", f.name, s)
			}
			*f.t = t
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, fmt.Errorf("since (%s) is not before until (%s)", v.Get("since"), v.Get("until"))
	}
	terms, err := parseTerms(v.Get("q"))
	if err != nil {
		return q, err
	}
	q.Terms = terms
	q.Limit = DefaultLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, fmt.Errorf("limit is a number from 1 to %d, not %q", MaxLimit, s)
		}
		q.Limit = n
	}
	if s := v.Get("cursor"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return q, fmt.Errorf("cursor %q is not one this log gave: pass back the \"next\" of the previous page as it is", s)
		}
		q.Before, q.HasBefore = n, true
	}
	return q, nil
}

// parseTerms splits q into words, as the full-text index splits the
// events; a trailing '*' makes a word a prefix.
func parseTerms(q string) ([]string, error) {
	var terms []string
	for _, w := range strings.Fields(q) {
		prefix := strings.HasSuffix(w, "*")
		parts := strings.FieldsFunc(strings.TrimSuffix(w, "*"), func(r rune) bool { return !isWordRune(r) })
		for i, p := range parts {
			if prefix && i == len(parts)-1 {
				p += "*"
			}
			terms = append(terms, p)
		}
	}
	if len(terms) > maxTerms {
		return nil, fmt.Errorf("q has %d words; at most %d", len(terms), maxTerms)
	}
	if len(terms) == 0 && strings.TrimSpace(q) != "" {
		// Without this, q=!!! would be no filter at all, and answer with
		// every event.
		return nil, fmt.Errorf("q %q has no words: words are letters and numbers, and the rest separates them", q)
	}
	return terms, nil
}

// isWordRune reports whether r is part of a word for the full-text index:
// the characters SQLite's unicode61 tokenizer keeps by default (Unicode
// categories L*, N* and Co); every other character separates words.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Co, r)
}

// Matches reports whether an event leaf's stamped and extracted values
// pass the query's filters (all but q, which only the full-text index
// answers). The log checks every candidate the index gives with it.
func (q Query) Matches(received time.Time, source string, f Fields) bool {
	for _, c := range []struct {
		m Match
		v string
	}{{q.Actor, f.Actor}, {q.Action, f.Action}, {q.Resource, f.Resource}, {q.Source, source}, {q.Outcome, f.Outcome}} {
		if c.m.set() && !c.m.holds(c.v) {
			return false
		}
	}
	if !q.Since.IsZero() && received.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !received.Before(q.Until) {
		return false
	}
	return true
}

// Find returns the indexes of up to limit candidates, newest first, and
// whether there may be more below the last.
func (s *Store) Find(ctx context.Context, q Query, limit int) ([]uint64, bool, error) {
	stmt, args := s.findSQL(q, limit)
	rows, err := s.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var i uint64
		if err := rows.Scan(&i); err != nil {
			return nil, false, err
		}
		out = append(out, i)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// findSQL is the statement of Find: up to limit+1 indexes, newest first.
func (s *Store) findSQL(q Query, limit int) (string, []any) {
	var where []string
	var args []any
	col := func(name string) string { return "e." + name }
	for _, f := range []struct {
		name string
		m    Match
	}{{"actor", q.Actor}, {"action", q.Action}, {"resource", q.Resource}, {"source", q.Source}, {"outcome", q.Outcome}} {
		if !f.m.set() {
			continue
		}
		v := Cut(f.m.Value)
		switch {
		case !f.m.Prefix:
			where = append(where, col(f.name)+" = ?")
			args = append(args, s.bound(v))
		case v == "":
			where = append(where, col(f.name)+" <> ''")
		default:
			where = append(where, col(f.name)+" >= ?")
			args = append(args, s.bound(v))
			if hi, ok := prefixEnd(v); ok {
				where = append(where, col(f.name)+" < ?")
				args = append(args, s.bound(hi))
			}
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "e.received >= ?")
		args = append(args, unixNano(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, "e.received < ?")
		args = append(args, unixNano(q.Until))
	}
	if q.HasBefore {
		where = append(where, "e.idx < ?")
		args = append(args, q.Before)
	}
	from := s.t("search_entries") + " e"
	if len(q.Terms) > 0 {
		if s.mysql {
			where = append(where, "MATCH(e.text) AGAINST (? IN BOOLEAN MODE)")
			args = append(args, mysqlBoolean(q.Terms))
		} else {
			from += " JOIN search_text t ON t.rowid = e.idx"
			where = append(where, "search_text MATCH ?")
			args = append(args, ftsQuery(q.Terms))
		}
	}
	stmt := "SELECT e.idx FROM " + from
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	stmt += " ORDER BY e.idx DESC LIMIT ?"
	return stmt, append(args, limit+1)
}

// unixNano is t in nanoseconds since 1970, as the index keeps "received",
// held to the range of an int64: time.UnixNano wraps around for a time
// before 1678 or after 2262, which a query may give ("until=9999-12-31").
// Every received time is inside the range, so the clamped bound keeps or
// drops the same rows as the exact one.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNano):
		return math.MinInt64
	case t.After(maxNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minNano = time.Unix(0, math.MinInt64)
	maxNano = time.Unix(0, math.MaxInt64)
)

// bound is a value to compare with a field: bytes on MySQL, whose fields
// are VARBINARY and where prefixEnd's bound may not be UTF-8; text on
// SQLite, where a BLOB sorts above every TEXT.
func (s *Store) bound(v string) any {
	if s.mysql {
		return []byte(v)
	}
	return v
}

// prefixEnd is the least string above every string with prefix p, if
// there is one.
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for len(b) > 0 && b[len(b)-1] == 0xff {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "", false
	}
	b[len(b)-1]++
	return string(b), true
}

// ftsQuery is an FTS5 query that needs every term: each is quoted, so
// nothing in q is FTS5 syntax.
func ftsQuery(terms []string) string {
	var b strings.Builder
	for i, t := range terms {
		if i > 0 {
			b.WriteByte(' ')
		}
		prefix := strings.HasSuffix(t, "*")
		t = strings.TrimSuffix(t, "*")
		b.WriteString(`"` + strings.ReplaceAll(t, `"`, `""`) + `"`)
		if prefix {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// mysqlBoolean is the same in MySQL's boolean full-text syntax: "+word"
// or "+word*" each (parseTerms leaves only letters and digits, so nothing
// in q is an operator).
func mysqlBoolean(terms []string) string {
	var b strings.Builder
	for i, t := range terms {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("+" + t)
	}
	return b.String()
}
