package checkpoint

// The canonicalizer as it was before issue 13 made it faster (jcs.go at
// v0.12.0), kept as the reference the fast one must agree with, byte for
// byte and in what it refuses (FuzzCanonicalizeMatchesReference).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// refCanonicalize checks that in is a single I-JSON value (RFC 7493) and returns
// its canonical form (RFC 8785, JSON Canonicalization Scheme): no
// insignificant white space, object members sorted by the UTF-16 code units of
// their names, strings with the minimal escaping of ECMAScript's
// JSON.stringify, and numbers in ECMAScript's shortest round-trip form.
//
// I-JSON is stricter than JSON, and the check is exact: refMember names must be
// unique; a number must be exactly the value of its nearest double (so
// 9007199254740993, 1e400 and 3.14159265358979323846 are refused, while 1.50
// and 1E2 are accepted and become 1.5 and 100); strings must be valid UTF-8
// with no escaped lone surrogate. The same input always canonicalizes to the
// same bytes, and canonical input is returned unchanged.
func refCanonicalize(in []byte) ([]byte, error) {
	return refAppendCanonical(make([]byte, 0, len(in)), in)
}

// refAppendCanonical is refCanonicalize appending to dst.
func refAppendCanonical(dst, in []byte) ([]byte, error) {
	p := refGetParser(in)
	defer refPutParser(p)
	p.skipSpace()
	out, err := p.value(dst, 0)
	if err != nil {
		return dst, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return dst, p.errorf("unexpected data after the JSON value")
	}
	return out, nil
}

type refJsonParser struct {
	in  []byte
	pos int
	// scratch[d] holds the members of the object being parsed at depth d.
	// An object's members are copied out before its parent goes on, so one
	// scratch per depth serves every object, and a pooled parser allocates
	// next to nothing per event.
	scratch []refObjectScratch
}

type refObjectScratch struct {
	members []refMember
	buf     []byte
	ends    []int
}

var refParsers = sync.Pool{New: func() any { return new(refJsonParser) }}

func refGetParser(in []byte) *refJsonParser {
	p := refParsers.Get().(*refJsonParser)
	p.in, p.pos = in, 0
	return p
}

func refPutParser(p *refJsonParser) {
	p.in = nil
	for i := range p.scratch {
		clear(p.scratch[i].members) // drop references to the input
	}
	refParsers.Put(p)
}

func (p *refJsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d", ErrNotIJSON, fmt.Sprintf(format, args...), p.pos)
}

func (p *refJsonParser) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *refJsonParser) value(dst []byte, depth int) ([]byte, error) {
	if p.pos >= len(p.in) {
		return dst, p.errorf("unexpected end of input")
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		if depth >= MaxJSONDepth {
			return dst, p.errorf("nested deeper than %d", MaxJSONDepth)
		}
		return p.object(dst, depth+1)
	case c == '[':
		if depth >= MaxJSONDepth {
			return dst, p.errorf("nested deeper than %d", MaxJSONDepth)
		}
		return p.array(dst, depth+1)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return dst, err
		}
		return refAppendJSONString(dst, s), nil // s may alias p.in: append copies
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(dst)
	case c == 't':
		return p.literal(dst, "true")
	case c == 'f':
		return p.literal(dst, "false")
	case c == 'n':
		return p.literal(dst, "null")
	default:
		return dst, p.errorf("unexpected character %q", c)
	}
}

func (p *refJsonParser) literal(dst []byte, lit string) ([]byte, error) {
	if !bytes.HasPrefix(p.in[p.pos:], []byte(lit)) {
		return dst, p.errorf("invalid literal")
	}
	p.pos += len(lit)
	return append(dst, lit...), nil
}

type refMember struct {
	name  []byte // unescaped; may alias the input
	value []byte // canonical
}

func (p *refJsonParser) object(dst []byte, depth int) ([]byte, error) {
	members, err := p.members(depth)
	if err != nil {
		return dst, err
	}
	return refAppendMembers(dst, members), nil
}

// members parses an object at p.pos and returns its members sorted in
// canonical order, with canonical values. The slice and the values live in
// the parser's scratch for this depth: use them before parsing another
// object at the same depth.
func (p *refJsonParser) members(depth int) ([]refMember, error) {
	p.pos++ // '{'
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		return nil, nil
	}
	for len(p.scratch) <= depth {
		p.scratch = append(p.scratch, refObjectScratch{})
	}
	members, buf, ends := p.scratch[depth].members[:0], p.scratch[depth].buf[:0], p.scratch[depth].ends[:0]
	defer func() {
		// Keep what grew for the next object at this depth.
		p.scratch[depth] = refObjectScratch{members: members[:0], buf: buf[:0], ends: ends[:0]}
	}()
	for {
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return nil, p.errorf("expected a refMember name")
		}
		name, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return nil, p.errorf("expected ':' after refMember name")
		}
		p.pos++
		p.skipSpace()
		buf, err = p.value(buf, depth)
		if err != nil {
			return nil, err
		}
		members = append(members, refMember{name: name})
		ends = append(ends, len(buf))
		p.skipSpace()
		if p.pos >= len(p.in) {
			return nil, p.errorf("unexpected end of input in object")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			p.skipSpace()
			continue
		}
		if p.in[p.pos] == '}' {
			p.pos++
			break
		}
		return nil, p.errorf("expected ',' or '}' in object")
	}
	start := 0
	for i := range members {
		members[i].value = buf[start:ends[i]]
		start = ends[i]
	}
	slices.SortFunc(members, func(a, b refMember) int { return refCompareUTF16(a.name, b.name) })
	for i := 1; i < len(members); i++ {
		if bytes.Equal(members[i].name, members[i-1].name) {
			return nil, fmt.Errorf("%w: duplicate refMember name %q", ErrNotIJSON, members[i].name)
		}
	}
	return members, nil
}

func refAppendMembers(dst []byte, members []refMember) []byte {
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = refAppendJSONString(dst, m.name)
		dst = append(dst, ':')
		dst = append(dst, m.value...)
	}
	return append(dst, '}')
}

// refCanonicalObject parses p's input, which must hold one JSON object and
// nothing else, and returns its members in canonical order. They live in
// p's scratch: use them before putting p back.
func refCanonicalObject(p *refJsonParser) ([]refMember, error) {
	p.skipSpace()
	if p.pos >= len(p.in) || p.in[p.pos] != '{' {
		return nil, p.errorf("expected a JSON object")
	}
	members, err := p.members(1)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return nil, p.errorf("unexpected data after the JSON object")
	}
	return members, nil
}

func (p *refJsonParser) array(dst []byte, depth int) ([]byte, error) {
	p.pos++ // '['
	dst = append(dst, '[')
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		return append(dst, ']'), nil
	}
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		var err error
		dst, err = p.value(dst, depth)
		if err != nil {
			return dst, err
		}
		p.skipSpace()
		if p.pos >= len(p.in) {
			return dst, p.errorf("unexpected end of input in array")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			p.skipSpace()
			continue
		}
		if p.in[p.pos] == ']' {
			p.pos++
			return append(dst, ']'), nil
		}
		return dst, p.errorf("expected ',' or ']' in array")
	}
}

// str parses a JSON string at p.pos and returns its value, which aliases
// the input when the string has no escapes.
func (p *refJsonParser) str() ([]byte, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes, all printable ASCII or valid UTF-8.
	for p.pos < len(p.in) {
		c := p.in[p.pos]
		if c == '"' {
			s := p.in[start:p.pos:p.pos]
			p.pos++
			if !utf8.Valid(s) {
				return nil, p.errorf("invalid UTF-8 in string")
			}
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, p.errorf("control character in string")
		}
		p.pos++
	}
	if p.pos >= len(p.in) {
		return nil, p.errorf("unterminated string")
	}
	// Slow path with escapes.
	out := make([]byte, 0, p.pos-start+16)
	out = append(out, p.in[start:p.pos]...)
	for p.pos < len(p.in) {
		c := p.in[p.pos]
		switch {
		case c == '"':
			p.pos++
			if !utf8.Valid(out) {
				return nil, p.errorf("invalid UTF-8 in string")
			}
			return out, nil
		case c < 0x20:
			return nil, p.errorf("control character in string")
		case c != '\\':
			out = append(out, c)
			p.pos++
			continue
		}
		// Escape.
		if p.pos+1 >= len(p.in) {
			return nil, p.errorf("unterminated escape")
		}
		e := p.in[p.pos+1]
		p.pos += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, p.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				if r >= 0xDC00 {
					return nil, p.errorf("lone low surrogate")
				}
				if p.pos+1 >= len(p.in) || p.in[p.pos] != '\\' || p.in[p.pos+1] != 'u' {
					return nil, p.errorf("lone high surrogate")
				}
				p.pos += 2
				r2, ok := p.hex4()
				if !ok {
					return nil, p.errorf("invalid \\u escape")
				}
				if r2 < 0xDC00 || r2 > 0xDFFF {
					return nil, p.errorf("lone high surrogate")
				}
				r = utf16.DecodeRune(r, r2)
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, p.errorf("invalid escape \\%c", e)
		}
	}
	return nil, p.errorf("unterminated string")
}

func (p *refJsonParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.in) {
		return 0, false
	}
	var r rune
	for _, c := range p.in[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// number parses a JSON number and appends its ECMAScript form, refusing
// numbers whose decimal value is not exactly the double nearest to it.
func (p *refJsonParser) number(dst []byte) ([]byte, error) {
	start := p.pos
	if p.in[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.in) && p.in[p.pos] >= '0' && p.in[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	intStart := p.pos
	if n := digits(); n == 0 {
		return dst, p.errorf("invalid number")
	} else if n > 1 && p.in[intStart] == '0' {
		return dst, p.errorf("number with a leading zero")
	}
	if p.pos < len(p.in) && p.in[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return dst, p.errorf("invalid number")
		}
	}
	if p.pos < len(p.in) && (p.in[p.pos] == 'e' || p.in[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.in) && (p.in[p.pos] == '+' || p.in[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return dst, p.errorf("invalid number")
		}
	}
	lit := p.in[start:p.pos]
	// Small integers, the common case, are exact and already canonical
	// unless they are negative zero.
	if len(lit) <= 15 && refIsPlainInt(lit) {
		if string(lit) == "-0" {
			return append(dst, '0'), nil
		}
		return append(dst, lit...), nil
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil || math.IsInf(f, 0) {
		return dst, p.errorf("number %s is out of the range of a double", lit)
	}
	if !refSameDecimal(lit, strconv.AppendFloat(nil, f, 'e', -1, 64)) {
		return dst, p.errorf("number %s cannot be held exactly by a double", lit)
	}
	return refAppendESNumber(dst, f), nil
}

func refIsPlainInt(b []byte) bool {
	if b[0] == '-' {
		b = b[1:]
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// refSameDecimal reports whether two decimal literals denote the same number.
func refSameDecimal(a, b []byte) bool {
	an, ad, ae := refDecimalParts(a)
	bn, bd, be := refDecimalParts(b)
	if len(ad) == 0 && len(bd) == 0 {
		return true // both zero, whatever the sign
	}
	return an == bn && ae == be && string(ad) == string(bd)
}

// refDecimalParts splits a decimal literal into its sign, its significant digits
// (no leading or trailing zeros) and the exponent of the first digit.
func refDecimalParts(s []byte) (neg bool, digits []byte, exp int) {
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	mant, e := s, 0
	if i := bytes.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		v, err := strconv.Atoi(string(s[i+1:]))
		if err != nil {
			v = math.MaxInt32 // absurd exponents never match a double's
		}
		e = v
	}
	intPart, frac := mant, []byte(nil)
	if i := bytes.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	all := append(append([]byte{}, intPart...), frac...)
	point := len(intPart) // decimal point after this many digits of all
	lead := 0
	for lead < len(all) && all[lead] == '0' {
		lead++
	}
	all = all[lead:]
	all = bytes.TrimRight(all, "0")
	return neg, all, e + point - lead
}

// refAppendESNumber appends f as ECMAScript's Number.prototype.toString does,
// which is what RFC 8785 requires (and what encoding/json does too).
func refAppendESNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst) - start
		if n >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

const refHexDigits = "0123456789abcdef"

// refAppendJSONString appends s as RFC 8785 serializes strings: only '"', '\\'
// and control characters are escaped, with the short escapes where they exist.
func refAppendJSONString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', refHexDigits[c>>4], refHexDigits[c&0xF])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// refCompareUTF16 orders strings by their UTF-16 code units, as RFC 8785 sorts
// refMember names. It differs from byte order only when a supplementary-plane
// character meets one in U+E000..U+FFFF.
func refCompareUTF16[T string | []byte](a, b T) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		if a[i] < utf8.RuneSelf && b[i] < utf8.RuneSelf {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
		// Compare the differing runes as UTF-16. i may sit inside a
		// multi-byte rune whose first bytes both share: back up to its start.
		for i > 0 && !utf8.RuneStart(a[i]) {
			i--
		}
		ra, _ := utf8.DecodeRuneInString(string(a[i:]))
		rb, _ := utf8.DecodeRuneInString(string(b[i:]))
		ua, ub := refUtf16Key(ra), refUtf16Key(rb)
		if ua < ub {
			return -1
		}
		if ua > ub {
			return 1
		}
		// Same rune after all cannot happen when bytes differ; fall back.
		if string(a[i:]) < string(b[i:]) {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}

// refUtf16Key maps a rune to a value that sorts like its first UTF-16 code unit,
// with the second unit as a tie-break.
func refUtf16Key(r rune) uint32 {
	if r >= 0x10000 {
		r1, r2 := utf16.EncodeRune(r)
		return uint32(r1)<<16 | uint32(r2)
	}
	return uint32(r) << 16
}

func refAppendCanonicalEvent(dst, in []byte) ([]byte, EventID, error) {
	if t := bytes.TrimLeft(in, " \t\r\n"); len(t) > 0 && t[0] != '{' {
		if _, err := refCanonicalize(in); err != nil {
			return dst, EventID{}, err
		}
		return dst, EventID{}, ErrNotObject
	}
	p := refGetParser(in)
	defer refPutParser(p)
	members, err := refCanonicalObject(p)
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
		} else if s, err := refStringValue(m.value); err == nil {
			id = EventID{Value: s}
		}
	}
	return refAppendMembers(dst, members), id, nil
}

func refStringValue(v []byte) (string, error) {
	if len(v) == 0 || v[0] != '"' {
		return "", errors.New("not a string")
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", err
	}
	return s, nil
}
