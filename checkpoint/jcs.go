package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxJSONDepth bounds the nesting of arrays and objects in an event, so that
// a hostile body cannot exhaust the stack.
const MaxJSONDepth = 64

// ErrNotIJSON is wrapped by every error Canonicalize returns for input that is
// not I-JSON (RFC 7493): invalid JSON, duplicate member names, numbers a
// double cannot hold exactly, lone surrogates, invalid UTF-8.
var ErrNotIJSON = errors.New("not I-JSON")

// Canonicalize checks that in is a single I-JSON value (RFC 7493) and returns
// its canonical form (RFC 8785, JSON Canonicalization Scheme): no
// insignificant white space, object members sorted by the UTF-16 code units of
// their names, strings with the minimal escaping of ECMAScript's
// JSON.stringify, and numbers in ECMAScript's shortest round-trip form.
//
// I-JSON is stricter than JSON, and the check is exact: member names must be
// unique; a number must be exactly the value of its nearest double (so
// 9007199254740993, 1e400 and 3.14159265358979323846 are refused, while 1.50
// and 1E2 are accepted and become 1.5 and 100); strings must be valid UTF-8
// with no escaped lone surrogate. The same input always canonicalizes to the
// same bytes, and canonical input is returned unchanged.
func Canonicalize(in []byte) ([]byte, error) {
	return AppendCanonical(make([]byte, 0, len(in)), in)
}

// AppendCanonical is Canonicalize appending to dst.
func AppendCanonical(dst, in []byte) ([]byte, error) {
	p := getParser(in)
	defer putParser(p)
	p.skipSpace()
	out, raw, err := p.value(dst, 0)
	if err != nil {
		return dst, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return dst, p.errorf("unexpected data after the JSON value")
	}
	return append(out, raw...), nil
}

// The parser checks and canonicalizes in one pass. A value that is already
// in canonical form in the input (a string without escapes, a small
// integer, a literal, and an object or array made only of such values, in
// canonical order and without white space) is not copied as it is parsed:
// value returns it as a slice of the input, and it is copied once, into
// the output, by whatever holds it. Only what canonicalization changes (a
// reordered object, an escaped string, a number in another form) is built
// in the scratch buffers.
type jsonParser struct {
	in  []byte
	pos int
	// scratch[d] holds the members of the object being parsed at depth d.
	// An object's members are copied out before its parent goes on, so one
	// scratch per depth serves every object, and a pooled parser allocates
	// next to nothing per event.
	scratch []objectScratch
}

type objectScratch struct {
	members []member
	buf     []byte
	// spans[i] is where member i's value is in buf, when it is not a
	// slice of the input.
	spans [][2]int
	// order and sorted sort members: the indexes are sorted, then the
	// members copied in their order, so that a sort moves no pointers.
	order  []int
	sorted []member
}

var parsers = sync.Pool{New: func() any { return new(jsonParser) }}

func getParser(in []byte) *jsonParser {
	p := parsers.Get().(*jsonParser)
	p.in, p.pos = in, 0
	return p
}

func putParser(p *jsonParser) {
	p.in = nil
	for i := range p.scratch {
		// Drop references to the input (the slices are kept empty).
		sc := &p.scratch[i]
		clear(sc.members[:cap(sc.members)])
		clear(sc.sorted[:cap(sc.sorted)])
	}
	parsers.Put(p)
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d", ErrNotIJSON, fmt.Sprintf(format, args...), p.pos)
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value parses the JSON value at p.pos. Its canonical form is either
// appended to dst (raw is nil) or, when the input already holds it, raw: a
// slice of the input, and dst is returned as it was.
func (p *jsonParser) value(dst []byte, depth int) (out, raw []byte, err error) {
	if p.pos >= len(p.in) {
		return dst, nil, p.errorf("unexpected end of input")
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		if depth >= MaxJSONDepth {
			return dst, nil, p.errorf("nested deeper than %d", MaxJSONDepth)
		}
		return p.object(dst, depth+1)
	case c == '[':
		if depth >= MaxJSONDepth {
			return dst, nil, p.errorf("nested deeper than %d", MaxJSONDepth)
		}
		return p.array(dst, depth+1)
	case c == '"':
		start := p.pos
		s, plain, err := p.str()
		if err != nil {
			return dst, nil, err
		}
		if plain {
			return dst, p.in[start:p.pos], nil
		}
		return appendJSONString(dst, s), nil, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(dst)
	case c == 't':
		return p.literal(dst, "true")
	case c == 'f':
		return p.literal(dst, "false")
	case c == 'n':
		return p.literal(dst, "null")
	default:
		return dst, nil, p.errorf("unexpected character %q", c)
	}
}

func (p *jsonParser) literal(dst []byte, lit string) ([]byte, []byte, error) {
	if !bytes.HasPrefix(p.in[p.pos:], []byte(lit)) {
		return dst, nil, p.errorf("invalid literal")
	}
	p.pos += len(lit)
	return dst, p.in[p.pos-len(lit) : p.pos], nil
}

type member struct {
	name  []byte // unescaped; may alias the input
	value []byte // canonical; may alias the input
	// plain: the name had no escape in the input, so its canonical form
	// is the name between quotes.
	plain bool
}

func (p *jsonParser) object(dst []byte, depth int) ([]byte, []byte, error) {
	start := p.pos
	members, asIs, err := p.members(depth)
	if err != nil {
		return dst, nil, err
	}
	if asIs {
		return dst, p.in[start:p.pos], nil
	}
	return appendMembers(dst, members), nil, nil
}

// members parses an object at p.pos and returns its members sorted in
// canonical order, with canonical values, and whether the object's input
// bytes are already its canonical form (asIs). The slice and the values
// live in the parser's scratch for this depth, or in the input: use them
// before parsing another object at the same depth.
func (p *jsonParser) members(depth int) (members []member, asIs bool, err error) {
	start := p.pos
	p.pos++ // '{'
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		return nil, p.pos-start == 2, nil
	}
	for len(p.scratch) <= depth {
		p.scratch = append(p.scratch, objectScratch{})
	}
	sc := &p.scratch[depth]
	members, buf, spans := sc.members[:0], sc.buf[:0], sc.spans[:0]
	defer func() {
		// Keep what grew for the next object at this depth.
		sc.members, sc.buf, sc.spans = members[:0], buf[:0], spans[:0]
	}()
	asIs = true
	size := 1 // the canonical form's length: '{', then each member and its ',' or '}'
	for {
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return nil, false, p.errorf("expected a member name")
		}
		nameStart := p.pos
		name, plain, err := p.str()
		if err != nil {
			return nil, false, err
		}
		nameLen := p.pos - nameStart
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return nil, false, p.errorf("expected ':' after member name")
		}
		p.pos++
		p.skipSpace()
		from := len(buf)
		var raw []byte
		buf, raw, err = p.value(buf, depth)
		if err != nil {
			return nil, false, err
		}
		if raw == nil {
			asIs = false
		}
		members = append(members, member{name: name, value: raw, plain: plain})
		spans = append(spans, [2]int{from, len(buf)})
		asIs = asIs && plain
		size += nameLen + 1 + len(raw) + 1
		p.skipSpace()
		if p.pos >= len(p.in) {
			return nil, false, p.errorf("unexpected end of input in object")
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
		return nil, false, p.errorf("expected ',' or '}' in object")
	}
	for i := range members {
		if members[i].value == nil {
			members[i].value = buf[spans[i][0]:spans[i][1]]
		}
	}
	sorted := true
	for i := 1; i < len(members); i++ {
		switch c := compareNames(members[i-1].name, members[i].name); {
		case c == 0:
			return nil, false, fmt.Errorf("%w: duplicate member name %q", ErrNotIJSON, members[i].name)
		case c > 0:
			sorted = false
		}
	}
	if !sorted {
		sc.order = sortMembers(members, sc.order[:0])
		sc.sorted = sc.sorted[:0]
		for _, i := range sc.order {
			sc.sorted = append(sc.sorted, members[i])
		}
		// members (the parse order) keeps its array for the next object;
		// the sorted copy is what the caller gets.
		clear(members)
		members, sc.sorted = sc.sorted, members
		for i := 1; i < len(members); i++ {
			if bytes.Equal(members[i].name, members[i-1].name) {
				return nil, false, fmt.Errorf("%w: duplicate member name %q", ErrNotIJSON, members[i].name)
			}
		}
	}
	// In order, every name and value as the input has it, and exactly as
	// many bytes as the canonical form: no white space either.
	asIs = asIs && sorted && p.pos-start == size
	return members, asIs, nil
}

// sortMembers appends to order the indexes of members sorted by their
// names in canonical order.
func sortMembers(members []member, order []int) []int {
	for i := range members {
		order = append(order, i)
	}
	if len(order) > 12 {
		slices.SortFunc(order, func(a, b int) int { return compareNames(members[a].name, members[b].name) })
		return order
	}
	// Insertion sort, as slices.SortFunc does for so few, without a
	// function value per comparison.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && compareNames(members[order[j]].name, members[order[j-1]].name) < 0; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	return order
}

// compareNames is compareUTF16 for member names, with the common case (the
// names first differ at an ASCII byte) inline.
func compareNames(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			if a[i] < utf8.RuneSelf && b[i] < utf8.RuneSelf {
				return int(a[i]) - int(b[i])
			}
			return compareUTF16(a, b)
		}
	}
	return len(a) - len(b)
}

func appendMembers(dst []byte, members []member) []byte {
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			dst = append(dst, ',')
		}
		if m.plain {
			dst = append(dst, '"')
			dst = append(dst, m.name...)
			dst = append(dst, '"', ':')
		} else {
			dst = appendJSONString(dst, m.name)
			dst = append(dst, ':')
		}
		dst = append(dst, m.value...)
	}
	return append(dst, '}')
}

// canonicalObject parses p's input, which must hold one JSON object and
// nothing else, and returns its members in canonical order. They live in
// p's scratch: use them before putting p back.
func canonicalObject(p *jsonParser) ([]member, error) {
	p.skipSpace()
	if p.pos >= len(p.in) || p.in[p.pos] != '{' {
		return nil, p.errorf("expected a JSON object")
	}
	members, _, err := p.members(1)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return nil, p.errorf("unexpected data after the JSON object")
	}
	return members, nil
}

func (p *jsonParser) array(dst []byte, depth int) ([]byte, []byte, error) {
	start, from := p.pos, len(dst)
	p.pos++ // '['
	dst = append(dst, '[')
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		if p.pos-start == 2 {
			return dst[:from], p.in[start:p.pos], nil
		}
		return append(dst, ']'), nil, nil
	}
	// Every element is copied into dst as it comes; if all of them were
	// canonical in the input, and there was no white space, the array is
	// too, and dst is given back.
	asIs := true
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		var raw []byte
		var err error
		dst, raw, err = p.value(dst, depth)
		if err != nil {
			return dst, nil, err
		}
		if raw == nil {
			asIs = false
		}
		dst = append(dst, raw...)
		p.skipSpace()
		if p.pos >= len(p.in) {
			return dst, nil, p.errorf("unexpected end of input in array")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			p.skipSpace()
			continue
		}
		if p.in[p.pos] == ']' {
			p.pos++
			dst = append(dst, ']')
			if asIs && p.pos-start == len(dst)-from {
				return dst[:from], p.in[start:p.pos], nil
			}
			return dst, nil, nil
		}
		return dst, nil, p.errorf("expected ',' or ']' in array")
	}
}

// str parses a JSON string at p.pos and returns its value, which aliases
// the input when the string has no escapes (plain: its canonical form is
// then the input's bytes, quotes included).
func (p *jsonParser) str() (s []byte, plain bool, err error) {
	p.pos++ // opening quote
	start := p.pos
	in := p.in
	i := p.pos
	for {
		// Eight bytes at a time while none needs a look (see strSpecial),
		// then one at a time.
		for i+8 <= len(in) && !strSpecial(binary.LittleEndian.Uint64(in[i:])) {
			i += 8
		}
		for i < len(in) && strPlain[in[i]] {
			i++
		}
		if i >= len(in) {
			p.pos = i
			return nil, false, p.errorf("unterminated string")
		}
		switch c := in[i]; {
		case c == '"':
			p.pos = i + 1
			return in[start:i:i], true, nil
		case c == '\\':
			p.pos = i
			s, err := p.strEscaped(start)
			return s, false, err
		case c < 0x20:
			p.pos = i
			return nil, false, p.errorf("control character in string")
		default: // c >= utf8.RuneSelf: one multi-byte UTF-8 sequence
			r, n := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && n <= 1 {
				p.pos = i
				return nil, false, p.errorf("invalid UTF-8 in string")
			}
			i += n
		}
	}
}

// strPlain marks the bytes a string holds as they are: printable ASCII
// other than '"' and '\\'.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// strSpecial reports whether any of the eight bytes in w is not in
// strPlain: a control character, '"', '\\' or a byte of a multi-byte
// UTF-8 sequence. (The expressions are the exact "has a byte less than n"
// and "has a zero byte" tests.)
func strSpecial(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	less := (w - 0x20*ones) &^ w
	q := w ^ ('"' * ones)
	bs := w ^ ('\\' * ones)
	return (w|less|((q-ones)&^q)|((bs-ones)&^bs))&highs != 0
}

// strEscaped is str's slow path, for a string with an escape: p.pos is at
// the first backslash, and the string began at start.
func (p *jsonParser) strEscaped(start int) ([]byte, error) {
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

func (p *jsonParser) hex4() (rune, bool) {
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
func (p *jsonParser) number(dst []byte) ([]byte, []byte, error) {
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
		return dst, nil, p.errorf("invalid number")
	} else if n > 1 && p.in[intStart] == '0' {
		return dst, nil, p.errorf("number with a leading zero")
	}
	if p.pos < len(p.in) && p.in[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return dst, nil, p.errorf("invalid number")
		}
	}
	if p.pos < len(p.in) && (p.in[p.pos] == 'e' || p.in[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.in) && (p.in[p.pos] == '+' || p.in[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return dst, nil, p.errorf("invalid number")
		}
	}
	lit := p.in[start:p.pos]
	// Small integers, the common case, are exact and already canonical
	// unless they are negative zero.
	if len(lit) <= 15 && isPlainInt(lit) {
		if string(lit) == "-0" {
			return append(dst, '0'), nil, nil
		}
		return dst, lit, nil
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil || math.IsInf(f, 0) {
		return dst, nil, p.errorf("number %s is out of the range of a double", lit)
	}
	if !sameDecimal(lit, strconv.AppendFloat(nil, f, 'e', -1, 64)) {
		return dst, nil, p.errorf("number %s cannot be held exactly by a double", lit)
	}
	return appendESNumber(dst, f), nil, nil
}

func isPlainInt(b []byte) bool {
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

// sameDecimal reports whether two decimal literals denote the same number.
func sameDecimal(a, b []byte) bool {
	an, ad, ae := decimalParts(a)
	bn, bd, be := decimalParts(b)
	if len(ad) == 0 && len(bd) == 0 {
		return true // both zero, whatever the sign
	}
	return an == bn && ae == be && string(ad) == string(bd)
}

// decimalParts splits a decimal literal into its sign, its significant digits
// (no leading or trailing zeros) and the exponent of the first digit.
func decimalParts(s []byte) (neg bool, digits []byte, exp int) {
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

// appendESNumber appends f as ECMAScript's Number.prototype.toString does,
// which is what RFC 8785 requires (and what encoding/json does too).
func appendESNumber(dst []byte, f float64) []byte {
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

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as RFC 8785 serializes strings: only '"', '\\'
// and control characters are escaped, with the short escapes where they exist.
func appendJSONString[T string | []byte](dst []byte, s T) []byte {
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
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785 sorts
// member names. It differs from byte order only when a supplementary-plane
// character meets one in U+E000..U+FFFF.
func compareUTF16[T string | []byte](a, b T) int {
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
		ua, ub := utf16Key(ra), utf16Key(rb)
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

// utf16Key maps a rune to a value that sorts like its first UTF-16 code unit,
// with the second unit as a tie-break.
func utf16Key(r rune) uint32 {
	if r >= 0x10000 {
		r1, r2 := utf16.EncodeRune(r)
		return uint32(r1)<<16 | uint32(r2)
	}
	return uint32(r) << 16
}
