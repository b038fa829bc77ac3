package checkpoint

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Commitment leaves and erasure leaves: how a log forgets an event's
// content and still proves that the event existed.
//
// A log in commitment mode does not put the event into its tree. For each
// event it draws a random salt of SaltSize bytes and appends a commitment
// leaf,
//
//	{"commitment":"<hex SHA-256 of salt || E>","received":"…","source":"…","v":2}
//
// where E is the event leaf (the "v":1 leaf of [Leaf]) the log would have
// written in event mode, with the same received time and source. The tiles
// and entry bundles then hold no event content and can be public; the event
// leaf and its salt (an [Opening]) live in the log's payload store. Whoever
// holds an opening can show what the leaf commits to ([Opening.Verify]);
// without the salt, nobody can confirm a guess of the content (an event of a
// few likely values would otherwise be found by hashing the guesses).
//
// Erasing an event deletes its opening and appends an erasure leaf:
//
//	{"erasure":{"entries":[[from,to],...],"reason":"…"},"received":"…","source":"…","v":2}
//
// which says which entries (half-open index ranges) were erased, why, by
// whom (source: the name of the admin token, or "retention") and when. The
// tree never changes, so every checkpoint and receipt stays valid; an
// auditor accepts a commitment leaf without an opening only where an
// erasure leaf covers it, and so tells erasure from tampering.

// SaltSize is the size of a commitment's salt: 256 bits.
const SaltSize = 32

// CommitmentVersion is the value of "v" in commitment and erasure leaves.
const CommitmentVersion = 2

// MaxErasureRanges bounds the index ranges one erasure leaf lists.
const MaxErasureRanges = 1024

// MaxErasureReason bounds an erasure's reason, in bytes.
const MaxErasureReason = 1024

// maxLeafIndex is the largest index an erasure may name: I-JSON numbers are
// exact only up to 2^53-1.
const maxLeafIndex = 1<<53 - 1

// A LeafKind is what a leaf claims to be.
type LeafKind int

const (
	// KindRaw is an entry that does not claim to be a leaf the log
	// writes: bytes from POST /add.
	KindRaw LeafKind = iota
	// KindEvent claims to be an event leaf ([Leaf], "v":1).
	KindEvent
	// KindCommitment claims to be a commitment leaf ([CommitmentLeaf]).
	KindCommitment
	// KindErasure claims to be an erasure leaf ([Erasure]).
	KindErasure
)

func (k LeafKind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindCommitment:
		return "commitment"
	case KindErasure:
		return "erasure"
	}
	return "raw"
}

var (
	eventLeafPrefix      = []byte(`{"event":`)
	commitmentLeafPrefix = []byte(`{"commitment":"`)
	erasureLeafPrefix    = []byte(`{"erasure":{`)
)

// FirstMemberKind says which kind of leaf b starts like, from its first
// bytes alone: canonical JSON sorts members, so the leaves the log writes
// start with their kind's member ({"event":, {"commitment":" or
// {"erasure":{). It is the cheap first look of a scan over a log's own
// entries, where POST /add lets in no body that claims a kind; it checks
// nothing else (KindOf reads the whole claim, the Parse functions the whole
// leaf). KindRaw when b starts like none of them.
func FirstMemberKind(b []byte) LeafKind {
	switch {
	case bytes.HasPrefix(b, eventLeafPrefix):
		return KindEvent
	case bytes.HasPrefix(b, commitmentLeafPrefix):
		return KindCommitment
	case bytes.HasPrefix(b, erasureLeafPrefix):
		return KindErasure
	}
	return KindRaw
}

// KindOf says what b claims to be: a JSON object with a "v" member and an
// "event", "commitment" or "erasure" member claims to be that kind of leaf
// (event first, then commitment, if it has several), canonical or not;
// anything else is raw. It does not check the claim: ParseLeaf,
// ParseCommitmentLeaf and ParseErasureLeaf do. The log's raw endpoint
// refuses every body that claims a kind, so that nobody forges a leaf the
// server seems to have written.
func KindOf(b []byte) LeafKind {
	// The leaves the log writes start with their kind's member and end
	// with "v". Valid JSON that does both has both members at its top
	// level, and so claims that kind, unless it also names a kind that
	// comes first (spelled out, or escaped with \u), without a decode of
	// every member name; anything else is judged by its member names.
	switch k := FirstMemberKind(b); k {
	case KindEvent:
		if bytes.HasSuffix(b, []byte(`,"v":1}`)) && json.Valid(b) {
			return KindEvent
		}
	case KindCommitment, KindErasure:
		if bytes.HasSuffix(b, []byte(`,"v":2}`)) && !bytes.Contains(b, []byte(`"event"`)) && !bytes.Contains(b, []byte(`\u`)) &&
			(k == KindCommitment || !bytes.Contains(b, []byte(`"commitment"`))) && json.Valid(b) {
			return k
		}
	}
	return claimedKind(b)
}

// CommitmentLeaf is a commitment leaf: a salted hash of an event leaf, with
// the event leaf's received time and source.
type CommitmentLeaf struct {
	Received   time.Time
	Source     string
	Commitment [sha256.Size]byte
}

// Commit returns the commitment to an event leaf under a salt: SHA-256 of
// the salt followed by the leaf's bytes.
func Commit(salt, eventLeaf []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(eventLeaf)
	var c [sha256.Size]byte
	h.Sum(c[:0])
	return c
}

// NewSalt draws a salt of SaltSize random bytes.
func NewSalt() ([]byte, error) {
	s := make([]byte, SaltSize)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	return s, nil
}

// AppendCommitmentLeaf appends the canonical bytes of c to dst.
func AppendCommitmentLeaf(dst []byte, c CommitmentLeaf) []byte {
	dst = append(dst, commitmentLeafPrefix...)
	dst = hex.AppendEncode(dst, c.Commitment[:])
	dst = append(dst, `","received":"`...)
	dst = appendReceived(dst, c.Received)
	dst = append(dst, `","source":`...)
	dst = appendJSONString(dst, c.Source)
	return append(dst, `,"v":2}`...)
}

// ParseCommitmentLeaf parses a commitment leaf strictly: b must be exactly
// the bytes AppendCommitmentLeaf writes for the values it holds.
func ParseCommitmentLeaf(b []byte) (CommitmentLeaf, error) {
	var c CommitmentLeaf
	err := parseV2(b, "commitment", func(name string, value []byte) error {
		switch name {
		case "commitment":
			s, err := stringValue(value)
			if err != nil {
				return fmt.Errorf("commitment: %w", err)
			}
			if len(s) != hex.EncodedLen(sha256.Size) {
				return fmt.Errorf("commitment is %d characters, not the %d hex digits of a SHA-256 hash", len(s), hex.EncodedLen(sha256.Size))
			}
			if _, err := hex.Decode(c.Commitment[:], []byte(s)); err != nil {
				return fmt.Errorf("commitment is not hex: %w", err)
			}
			return nil
		case "received":
			t, err := parseReceived(value)
			c.Received = t
			return err
		case "source":
			s, err := stringValue(value)
			c.Source = s
			return err
		}
		return errUnknownMember
	})
	if err != nil {
		return CommitmentLeaf{}, err
	}
	if !bytes.Equal(AppendCommitmentLeaf(nil, c), b) {
		return CommitmentLeaf{}, fmt.Errorf("%w: commitment leaf not in canonical form (hex must be lowercase)", ErrLeaf)
	}
	return c, nil
}

// An Opening shows what a commitment leaf commits to: the salt and the
// event leaf. Its JSON form is {"salt":"<base64>","leaf":"<base64>"}.
type Opening struct {
	Salt []byte `json:"salt"`
	Leaf []byte `json:"leaf"`
}

// Verify checks that o opens c: SHA-256 of the salt and the leaf is c's
// commitment, the leaf is a canonical event leaf, and its received time and
// source are c's, and the leaf is no larger than MaxLeafSize, as every
// event leaf the log writes. It returns the event leaf.
func (o Opening) Verify(c CommitmentLeaf) (Leaf, error) {
	if len(o.Salt) != SaltSize {
		return Leaf{}, fmt.Errorf("%w: the opening's salt is %d bytes, not %d", ErrOpening, len(o.Salt), SaltSize)
	}
	if len(o.Leaf) > MaxLeafSize {
		return Leaf{}, fmt.Errorf("%w: its event leaf is %d bytes, more than the %d a leaf may hold", ErrOpening, len(o.Leaf), MaxLeafSize)
	}
	if Commit(o.Salt, o.Leaf) != c.Commitment {
		return Leaf{}, fmt.Errorf("%w: the salt and event leaf do not hash to the commitment: the content was changed", ErrOpening)
	}
	l, err := ParseLeaf(o.Leaf)
	if err != nil {
		return Leaf{}, fmt.Errorf("%w: %w", ErrOpening, err)
	}
	if !l.Received.Equal(c.Received) || l.Source != c.Source {
		return Leaf{}, fmt.Errorf("%w: the event leaf says received %s from %q, the commitment leaf %s from %q",
			ErrOpening, l.Received.Format(ReceivedFormat), l.Source, c.Received.Format(ReceivedFormat), c.Source)
	}
	return l, nil
}

// ErrOpening is wrapped by the errors of Opening.Verify.
var ErrOpening = errors.New("the opening does not open the commitment")

// An IndexRange is the entries From, From+1, ..., To-1 of a log. Its JSON
// form, in an erasure leaf, is [from,to].
type IndexRange struct {
	From, To uint64
}

// Erasure is an erasure leaf: which entries' contents were erased, why, by
// whom (Source) and when (Received).
type Erasure struct {
	Received time.Time
	Source   string
	Entries  []IndexRange
	Reason   string
}

// Covers reports whether the erasure lists entry i.
func (e Erasure) Covers(i uint64) bool {
	k, found := slices.BinarySearchFunc(e.Entries, i, func(r IndexRange, i uint64) int {
		switch {
		case r.To <= i:
			return -1
		case r.From > i:
			return 1
		}
		return 0
	})
	_ = k
	return found
}

// CheckAt checks the rule an erasure leaf's place in its log adds to its
// format: the erasure leaf at index erases only entries before it, since
// nobody can erase an entry that is not yet in the log. The error says
// which range reaches too far.
func (e Erasure) CheckAt(index uint64) error {
	for _, r := range e.Entries {
		if r.To > index {
			return fmt.Errorf("erasure leaf %d erases [%d, %d), which reaches its own index or beyond: nobody can erase an entry that is not yet in the log", index, r.From, r.To)
		}
	}
	return nil
}

// check enforces the rules of an erasure leaf's entries and reason.
func (e Erasure) check() error {
	if len(e.Entries) == 0 {
		return errors.New("an erasure must list at least one range of entries")
	}
	if len(e.Entries) > MaxErasureRanges {
		return fmt.Errorf("an erasure lists %d ranges, more than the limit of %d", len(e.Entries), MaxErasureRanges)
	}
	for i, r := range e.Entries {
		if r.From >= r.To {
			return fmt.Errorf("range [%d,%d) is empty", r.From, r.To)
		}
		if r.To > maxLeafIndex {
			return fmt.Errorf("range [%d,%d) reaches past 2^53-1", r.From, r.To)
		}
		if i > 0 && r.From <= e.Entries[i-1].To {
			return fmt.Errorf("ranges must be sorted and neither overlap nor touch: [%d,%d) follows [%d,%d)",
				r.From, r.To, e.Entries[i-1].From, e.Entries[i-1].To)
		}
	}
	if e.Reason == "" {
		return errors.New("an erasure needs a reason")
	}
	if len(e.Reason) > MaxErasureReason {
		return fmt.Errorf("the reason is %d bytes, more than the limit of %d", len(e.Reason), MaxErasureReason)
	}
	if !utf8.ValidString(e.Reason) {
		return errors.New("the reason is not valid UTF-8")
	}
	return nil
}

// AppendErasureLeaf appends the canonical bytes of e to dst, after checking
// its entries (non-empty ranges, sorted, neither overlapping nor touching,
// at most MaxErasureRanges) and its reason (not empty, valid UTF-8, at most
// MaxErasureReason bytes).
func AppendErasureLeaf(dst []byte, e Erasure) ([]byte, error) {
	if err := e.check(); err != nil {
		return dst, fmt.Errorf("%w: %w", ErrLeaf, err)
	}
	return appendErasureLeaf(dst, e), nil
}

func appendErasureLeaf(dst []byte, e Erasure) []byte {
	dst = append(dst, erasureLeafPrefix...)
	dst = append(dst, `"entries":[`...)
	for i, r := range e.Entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		dst = strconv.AppendUint(dst, r.From, 10)
		dst = append(dst, ',')
		dst = strconv.AppendUint(dst, r.To, 10)
		dst = append(dst, ']')
	}
	dst = append(dst, `],"reason":`...)
	dst = appendJSONString(dst, e.Reason)
	dst = append(dst, `},"received":"`...)
	dst = appendReceived(dst, e.Received)
	dst = append(dst, `","source":`...)
	dst = appendJSONString(dst, e.Source)
	return append(dst, `,"v":2}`...)
}

// ParseErasureLeaf parses an erasure leaf strictly: b must be exactly the
// bytes AppendErasureLeaf writes for the values it holds, and they must
// follow its rules.
func ParseErasureLeaf(b []byte) (Erasure, error) {
	var e Erasure
	err := parseV2(b, "erasure", func(name string, value []byte) error {
		switch name {
		case "erasure":
			return parseErasureBody(value, &e)
		case "received":
			t, err := parseReceived(value)
			e.Received = t
			return err
		case "source":
			s, err := stringValue(value)
			e.Source = s
			return err
		}
		return errUnknownMember
	})
	if err != nil {
		return Erasure{}, err
	}
	if err := e.check(); err != nil {
		return Erasure{}, fmt.Errorf("%w: %w", ErrLeaf, err)
	}
	if !bytes.Equal(appendErasureLeaf(nil, e), b) {
		return Erasure{}, fmt.Errorf("%w: erasure leaf not in canonical form", ErrLeaf)
	}
	return e, nil
}

func parseErasureBody(v []byte, e *Erasure) error {
	if len(v) == 0 || v[0] != '{' {
		return errors.New("erasure is not an object")
	}
	p := getParser(v)
	defer putParser(p)
	members, err := canonicalObject(p)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, m := range members {
		seen[string(m.name)] = true
		switch string(m.name) {
		case "entries":
			if e.Entries, err = parseRanges(m.value); err != nil {
				return fmt.Errorf("entries: %w", err)
			}
		case "reason":
			if e.Reason, err = stringValue(m.value); err != nil {
				return fmt.Errorf("reason: %w", err)
			}
		default:
			return fmt.Errorf("unknown member %q in erasure", m.name)
		}
	}
	for _, name := range []string{"entries", "reason"} {
		if !seen[name] {
			return fmt.Errorf("no %q member in erasure", name)
		}
	}
	return nil
}

// parseRanges reads [[from,to],...] as canonical JSON writes it: no
// whitespace, integers in decimal without leading zeros. ParseErasureLeaf
// compares the whole leaf with its canonical form afterwards, so this
// reader need only refuse what it cannot read.
func parseRanges(v []byte) ([]IndexRange, error) {
	if len(v) < 2 || v[0] != '[' || v[len(v)-1] != ']' {
		return nil, errors.New("not an array")
	}
	rest := v[1 : len(v)-1]
	var out []IndexRange
	for len(rest) > 0 {
		if len(out) > 0 {
			if rest[0] != ',' {
				return nil, errors.New("ranges must be separated by commas")
			}
			rest = rest[1:]
		}
		if len(out) == MaxErasureRanges {
			return nil, fmt.Errorf("more than %d ranges", MaxErasureRanges)
		}
		end := bytes.IndexByte(rest, ']')
		if len(rest) == 0 || rest[0] != '[' || end < 0 {
			return nil, errors.New("each range must be an array [from,to]")
		}
		pair := bytes.Split(rest[1:end], []byte(","))
		if len(pair) != 2 {
			return nil, errors.New("each range must be an array of two indexes [from,to]")
		}
		from, err1 := strconv.ParseUint(string(pair[0]), 10, 64)
		to, err2 := strconv.ParseUint(string(pair[1]), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("range %s is not two indexes", rest[:end+1])
		}
		out = append(out, IndexRange{from, to})
		rest = rest[end+1:]
	}
	return out, nil
}

var errUnknownMember = errors.New("unknown member")

// parseV2 parses b as a canonical object with "v":2, the member kind,
// "received" and "source", calling f for each member but "v".
func parseV2(b []byte, kind string, f func(name string, value []byte) error) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: invalid UTF-8", ErrLeaf)
	}
	p := getParser(b)
	defer putParser(p)
	members, err := canonicalObject(p)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLeaf, err)
	}
	seen := map[string]bool{}
	for _, m := range members {
		name := string(m.name)
		seen[name] = true
		if name == "v" {
			if string(m.value) != "2" {
				return fmt.Errorf("%w: a %s leaf has \"v\":2, not %s", ErrLeaf, kind, m.value)
			}
			continue
		}
		if err := f(name, m.value); err != nil {
			if errors.Is(err, errUnknownMember) {
				return fmt.Errorf("%w: unknown member %q in a %s leaf", ErrLeaf, name, kind)
			}
			return fmt.Errorf("%w: %s", ErrLeaf, err)
		}
	}
	for _, name := range []string{"v", kind, "received", "source"} {
		if !seen[name] {
			return fmt.Errorf("%w: no %q member in a %s leaf", ErrLeaf, name, kind)
		}
	}
	return nil
}

// parseReceived reads a leaf's "received" string, which must be in
// ReceivedFormat exactly.
func parseReceived(v []byte) (time.Time, error) {
	s, err := stringValue(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("received: %w", err)
	}
	t, err := time.Parse(ReceivedFormat, s)
	if err != nil || t.Format(ReceivedFormat) != s {
		return time.Time{}, fmt.Errorf("received %q is not in the form %s", s, ReceivedFormat)
	}
	return t, nil
}
