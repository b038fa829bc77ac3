package checkpoint

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// HashSize is the size of a root hash: SHA-256, as RFC 6962 trees use.
const HashSize = 32

// MaxCheckpointSize bounds everything this package parses as a checkpoint: a
// body on its own (Parse) and a signed checkpoint with all its signature
// lines (Open, Cosignatures, Policy.Verify). A body is an origin, a number, a
// hash and a few extension lines, and signed-note verifiers stop at 100
// signatures of about 150 bytes each, so 64 KiB is generous; it is also what a
// server should pass to http.MaxBytesReader for a checkpoint.
const MaxCheckpointSize = 64 << 10

// ErrMalformed is wrapped by the errors returned for input that is not a
// well-formed checkpoint body, signed checkpoint or key. The message says
// what is wrong; a server answers 400.
var ErrMalformed = errors.New("checkpoint: malformed input")

// A Checkpoint is the body of a C2SP tlog-checkpoint v1.0.0: the log's origin,
// the number of entries in the tree, and the tree's RFC 6962 root hash,
// followed by optional extension lines.
type Checkpoint struct {
	Origin     string
	Size       uint64
	Hash       []byte   // the 32-byte root hash
	Extensions []string // optional extension lines, in order, each non-empty, without "\n"
}

// Parse parses a checkpoint body, strictly: every byte of body must be
// accounted for, and only the one text that Format would produce for the
// result is accepted, so that Format(Parse(body)) == body whenever Parse
// succeeds.
//
// The body is at most MaxCheckpointSize bytes of UTF-8 with no control
// characters other than "\n", and consists of:
//
//   - the origin, a non-empty line;
//   - the tree size in decimal, with no sign and no leading zeros ("0" alone
//     for the empty tree), at most 2^64-1;
//   - the root hash in standard, padded base64, exactly 32 bytes, in its one
//     canonical encoding;
//   - zero or more extension lines, each non-empty.
//
// Every line, the last included, ends in "\n". Parse does not look at
// signatures: see Open.
func Parse(body []byte) (Checkpoint, error) {
	if len(body) > MaxCheckpointSize {
		return Checkpoint{}, malformedf("body is %d bytes, more than the limit of %d", len(body), MaxCheckpointSize)
	}
	if err := checkNoteText(body); err != nil {
		return Checkpoint{}, err
	}
	if len(body) == 0 || body[len(body)-1] != '\n' {
		return Checkpoint{}, malformedf("body does not end with a newline")
	}
	lines := bytes.Split(body[:len(body)-1], []byte("\n"))
	if len(lines) < 3 {
		return Checkpoint{}, malformedf("body has %d lines, want at least 3 (origin, size, root hash)", len(lines))
	}
	var c Checkpoint
	if len(lines[0]) == 0 {
		return Checkpoint{}, malformedf("origin (line 1) is empty")
	}
	c.Origin = string(lines[0])

	size, err := parseDecimal(lines[1])
	if err != nil {
		return Checkpoint{}, malformedf("size (line 2): %v", err)
	}
	c.Size = size

	hash, err := decodeCanonicalBase64(lines[2])
	if err != nil {
		return Checkpoint{}, malformedf("root hash (line 3): %v", err)
	}
	if len(hash) != HashSize {
		return Checkpoint{}, malformedf("root hash (line 3) is %d bytes, want %d", len(hash), HashSize)
	}
	c.Hash = hash

	for i, l := range lines[3:] {
		if len(l) == 0 {
			return Checkpoint{}, malformedf("extension line (line %d) is empty", i+4)
		}
		c.Extensions = append(c.Extensions, string(l))
	}
	return c, nil
}

// Format returns the text of c, the exact inverse of Parse. It does not check
// c: a Checkpoint that did not come from Parse may format to a text that
// Parse refuses (a hash that is not 32 bytes, an origin with a newline). Sign
// checks before it signs.
func Format(c Checkpoint) []byte {
	n := len(c.Origin) + 1 + 20 + 1 + base64.StdEncoding.EncodedLen(len(c.Hash)) + 1
	for _, e := range c.Extensions {
		n += len(e) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, c.Origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, c.Size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, c.Hash)
	b = append(b, '\n')
	for _, e := range c.Extensions {
		b = append(b, e...)
		b = append(b, '\n')
	}
	return b
}

// check reports why c cannot be formatted into a body that Parse accepts
// back unchanged, or nil.
func (c Checkpoint) check() error {
	b := Format(c)
	got, err := Parse(b)
	if err != nil {
		return err
	}
	if got.Origin != c.Origin || len(got.Extensions) != len(c.Extensions) {
		return malformedf("body does not survive formatting")
	}
	for i := range got.Extensions {
		if got.Extensions[i] != c.Extensions[i] {
			return malformedf("extension %d does not survive formatting", i+1)
		}
	}
	return nil
}

// checkNoteText enforces signed-note's rule for note text: valid UTF-8 with
// no control characters but "\n". Note that CR is refused, so a body or note
// that went through a CRLF conversion fails here with a clear message.
func checkNoteText(b []byte) error {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return malformedf("invalid UTF-8 at byte %d", i)
		case r == '\r':
			return malformedf("carriage return at byte %d (lines must end in \\n alone)", i)
		case r < 0x20 && r != '\n':
			return malformedf("control character %U at byte %d", r, i)
		}
		i += size
	}
	return nil
}

// parseDecimal parses a canonical unsigned decimal: digits only, no leading
// zeros except "0" itself, no overflow.
func parseDecimal(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, errors.New("empty number")
	}
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", b)
		}
	}
	if len(b) > 1 && b[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", b)
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is larger than 2^64-1", b)
	}
	return n, nil
}

// decodeCanonicalBase64 decodes standard padded base64 and refuses every
// encoding but the canonical one. encoding/base64 alone is malleable: it
// skips CR and LF anywhere in its input, and (without Strict) accepts
// non-zero padding bits, so several texts would decode to the same bytes.
func decodeCanonicalBase64(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty base64")
	}
	out, err := base64.StdEncoding.Strict().AppendDecode(nil, b)
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %v", err)
	}
	if !bytes.Equal(base64.StdEncoding.AppendEncode(nil, out), b) {
		return nil, errors.New("non-canonical base64")
	}
	return out, nil
}

// malformedf returns an error wrapping ErrMalformed without repeating its
// text: "checkpoint: size (line 2): "012" has a leading zero".
func malformedf(format string, args ...any) error {
	return &sentinelError{ErrMalformed, fmt.Sprintf(format, args...)}
}
