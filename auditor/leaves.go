package auditor

import (
	"bytes"
	"encoding/binary"
	"math/bits"

	"github.com/tidemark/tidemark/checkpoint"
)

// leafClass is what a full check makes of one leaf.
type leafClass uint8

const (
	leafRaw        leafClass = iota // bytes from POST /add: not claiming to be a leaf the log writes
	leafEvent                       // a canonical event leaf, as the log writes them
	leafBad                         // claims to be a leaf the log writes (JSON object with "v" and "event", "commitment" or "erasure") but is not canonical
	leafCommitment                  // a canonical commitment leaf (v2): the event is in the log's payload store
	leafErasure                     // a canonical erasure leaf (v2): which entries' contents were erased, why, by whom
)

// eventPrefix starts every canonical event leaf: its members are sorted,
// and "event" sorts first.
var eventPrefix = []byte(`{"event":{`)

// classify sorts a leaf into raw, event, commitment, erasure or bad, with
// the reason for bad.
//
// checkpoint.ParseLeaf decides what an event leaf is; it costs about 6 µs
// for a 500-byte event, more than everything else a full check does per
// leaf. fastEventLeaf accepts, in well under a microsecond, the common
// subset of canonical leaves (ASCII strings without escapes, integers,
// shallow nesting) and says nothing about the rest, which go to ParseLeaf.
// It never accepts what ParseLeaf refuses (FuzzFastEventLeaf checks that).
func classify(b []byte) (leafClass, string) {
	l := classifyLeaf(b)
	return l.class, l.why
}

// classified is a leaf's class with what parsing it gave: the commitment
// of a commitment leaf, the erasure of an erasure leaf.
type classified struct {
	class      leafClass
	why        string
	commitment checkpoint.CommitmentLeaf
	erasure    checkpoint.Erasure
}

func classifyLeaf(b []byte) classified {
	if bytes.HasPrefix(b, eventPrefix) && fastEventLeaf(b) {
		return classified{class: leafEvent}
	}
	var err error
	switch checkpoint.KindOf(b) {
	case checkpoint.KindRaw:
		return classified{class: leafRaw}
	case checkpoint.KindCommitment:
		var c checkpoint.CommitmentLeaf
		if c, err = checkpoint.ParseCommitmentLeaf(b); err == nil {
			return classified{class: leafCommitment, commitment: c}
		}
	case checkpoint.KindErasure:
		var e checkpoint.Erasure
		if e, err = checkpoint.ParseErasureLeaf(b); err == nil {
			return classified{class: leafErasure, erasure: e}
		}
	case checkpoint.KindEvent:
		if _, err = checkpoint.ParseLeaf(b); err == nil {
			return classified{class: leafEvent}
		}
	}
	// KindOf judges the leaves the log writes by their first and last
	// bytes: bytes that are not JSON at all can look like one. The log's
	// raw endpoint takes those (they claim nothing), so they are raw, not
	// bad: a writer must not be able to raise a false alarm.
	if !checkpoint.ClaimsEventLeaf(b) {
		return classified{class: leafRaw}
	}
	return classified{class: leafBad, why: err.Error()}
}

// fastDepth bounds nesting on the fast path, well inside
// checkpoint.MaxJSONDepth.
const fastDepth = 32

// fastEventLeaf reports whether b is certainly a canonical event leaf. False
// means "not known", not "not a leaf".
func fastEventLeaf(b []byte) bool {
	// Every byte is either inside a string, which str checks, or consumed
	// by a rule of the grammar below that accepts only the bytes canonical
	// JSON has there (no whitespace), up to the end of b.
	s := scanner{b: b}
	if !s.lit(`{"event":`) || s.i >= len(b) || b[s.i] != '{' || !s.value(1) {
		return false
	}
	if s.lit(`,"idempotency_key":`) {
		k, ok := s.str()
		if !ok || len(k) == 0 {
			return false
		}
	}
	if !s.lit(`,"received":`) {
		return false
	}
	rcv, ok := s.str()
	if !ok || !receivedTime(rcv) {
		return false
	}
	if !s.lit(`,"source":`) {
		return false
	}
	if _, ok := s.str(); !ok {
		return false
	}
	return s.lit(`,"v":1}`) && s.i == len(b)
}

// scanner validates the canonical JSON subset of fastEventLeaf.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) lit(l string) bool {
	if len(s.b)-s.i < len(l) || string(s.b[s.i:s.i+len(l)]) != l {
		return false
	}
	s.i += len(l)
	return true
}

// str reads a string of printable ASCII without backslashes and returns
// its contents, which are then canonical as they stand (JCS escapes only
// '"', backslash and control characters); anything else is "not known".
func (s *scanner) str() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	j := start
	// Eight bytes at a time: find the closing quote, and refuse if a byte
	// before it is outside 0x20..0x7e or a backslash. Each test's lowest
	// flagged byte is exact; a false flag only ever sits above a true one.
	for ; j+8 <= len(s.b); j += 8 {
		w := binary.LittleEndian.Uint64(s.b[j:])
		// Below 0x20: w-0x20 borrows into the high bit; 0x7f and up: w+1
		// reaches it (or w-0x20 keeps it, for 0xff); a backslash is a zero
		// byte of w^0x5c.
		bad := ((w-0x20*ones)|(w+ones))&high | zeroByte(w^0x5c*ones)
		if q := zeroByte(w ^ 0x22*ones); q != 0 {
			n := bits.TrailingZeros64(q) / 8
			if bad&(1<<(8*n)-1) != 0 {
				return nil, false
			}
			s.i = j + n + 1
			return s.b[start : j+n], true
		}
		if bad != 0 {
			return nil, false
		}
	}
	for ; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// less reports whether a sorts strictly before b, bytewise: for short
// keys a loop is cheaper than bytes.Compare's call.
func less(a, b []byte) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// byte1 consumes c if it is next.
func (s *scanner) byte1(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

const (
	ones = 0x0101010101010101
	high = 0x8080808080808080
)

// zeroByte has the high bit set in the lowest byte of x that is zero, and
// no high bit below it (above it, borrows may set others).
func zeroByte(x uint64) uint64 { return (x - ones) &^ x & high }

// receivedTime reports whether b is a time in checkpoint.ReceivedFormat
// ("2006-01-02T15:04:05.000000000Z") exactly as Format writes it, which is
// what ParseLeaf checks with time.Parse and Format, a third of the cost of
// a whole fast check.
func receivedTime(b []byte) bool {
	if len(b) != len(checkpoint.ReceivedFormat) {
		return false
	}
	const layout = "dddd-dd-ddTdd:dd:dd.dddddddddZ"
	for i := range len(layout) {
		if c := b[i]; layout[i] == 'd' {
			if c-'0' > 9 {
				return false
			}
		} else if c != layout[i] {
			return false
		}
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range b[i : i+n] {
			v = 10*v + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	if month < 1 || month > 12 || day < 1 || num(11, 2) > 23 || num(14, 2) > 59 || num(17, 2) > 59 {
		return false
	}
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[month]
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		days = 29
	}
	return day <= days
}

func (s *scanner) value(depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		if depth >= fastDepth {
			return false
		}
		s.i++
		if s.i < len(s.b) && s.b[s.i] == '}' {
			s.i++
			return true
		}
		var prev []byte
		for first := true; ; first = false {
			k, ok := s.str()
			// ASCII names: UTF-16 order (JCS) is byte order. Strictly
			// increasing also means no duplicates (I-JSON).
			if !ok || !first && !less(prev, k) {
				return false
			}
			prev = k
			if !s.byte1(':') || !s.value(depth+1) {
				return false
			}
			if s.byte1('}') {
				return true
			}
			if !s.byte1(',') {
				return false
			}
		}
	case c == '[':
		if depth >= fastDepth {
			return false
		}
		s.i++
		if s.byte1(']') {
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			if s.byte1(']') {
				return true
			}
			if !s.byte1(',') {
				return false
			}
		}
	case c == '"':
		_, ok := s.str()
		return ok
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.integer()
	}
	return false
}

// integer reads an integer in canonical form that a double holds exactly:
// no leading zeros, no "-0", at most 15 digits. Fractions and exponents are
// left to the slow path, which knows ECMAScript's number formatting.
func (s *scanner) integer() bool {
	if s.b[s.i] == '-' {
		s.i++
		if s.i >= len(s.b) || s.b[s.i] < '1' || s.b[s.i] > '9' {
			return false
		}
	}
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	n := s.i - start
	if n == 0 || n > 15 || n > 1 && s.b[start] == '0' {
		return false
	}
	if s.i < len(s.b) {
		if c := s.b[s.i]; c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}
