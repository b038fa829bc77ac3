package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// ErrUnverified is wrapped by the errors returned when a signed checkpoint is
// well formed but not trusted: no signature by any of the given log keys for
// its origin, or an invalid signature by a key the caller trusts (which
// signed-note verifiers must treat as fatal, not skip). A witness answers 403.
var ErrUnverified = errors.New("checkpoint: not signed by a trusted key")

// maxSignatures is how many signature lines a signed checkpoint may carry.
// sumdb/note.Open refuses more than 100; we say so first, with a clear error.
const maxSignatures = 100

// cosignatureSize is the size of a cosignature/v1 signature in a signature
// line: a 4-byte key hash, an 8-byte timestamp, a 64-byte Ed25519 signature.
const cosignatureSize = 4 + 8 + 64

// Sign returns c as a signed note, signed by each of signers in order. For a
// checkpoint that Open will accept, one signer must be a log signer
// (NewLogSigner) whose name is c.Origin. Witness signers (NewWitnessSigner)
// may follow: their lines are cosignatures, timestamped now.
//
// Sign refuses a Checkpoint that Parse would not give back unchanged after
// Format, so it never signs a body that verifiers would reject.
func Sign(c Checkpoint, signers ...note.Signer) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("checkpoint: refusing to sign: %w", err)
	}
	if len(signers) == 0 {
		return nil, errors.New("checkpoint: Sign needs at least one signer")
	}
	signed, err := note.Sign(&note.Note{Text: string(Format(c))}, signers...)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: couldn't sign: %w", err)
	}
	return signed, nil
}

// Open verifies a signed checkpoint against the keys of the log that should
// have signed it and returns its parsed body and the note.
//
// Open succeeds only if
//
//   - signed is a well-formed signed note of at most MaxCheckpointSize bytes,
//     each signature line in canonical base64;
//   - its text is a checkpoint body that Parse accepts;
//   - at least one of logKeys whose name is the checkpoint's origin made a
//     valid signature over it.
//
// As signed-note requires, signatures by keys not in logKeys (cosignatures,
// most often) are skipped and listed in the note's UnverifiedSigs, while an
// invalid signature by one of logKeys is an error, even if another of them
// signed validly. A valid signature by one of logKeys for another origin does
// not count.
//
// Errors wrap ErrMalformed when signed is not well formed, and ErrUnverified
// when it is well formed but not trusted.
func Open(signed []byte, logKeys ...note.Verifier) (Checkpoint, *note.Note, error) {
	if len(logKeys) == 0 {
		return Checkpoint{}, nil, errors.New("checkpoint: Open needs at least one log key")
	}
	text, err := checkSignedNote(signed)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	c, err := Parse(text)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	n, err := note.Open(signed, note.VerifierList(logKeys...))
	if err != nil {
		return Checkpoint{}, nil, noteError(err, "log", c.Origin)
	}
	for _, s := range n.Sigs {
		if s.Name == c.Origin {
			return c, n, nil
		}
	}
	return Checkpoint{}, nil, &sentinelError{ErrUnverified, fmt.Sprintf(
		"checkpoint for origin %q is signed only by log keys for other origins (%s)", c.Origin, sigNames(n.Sigs))}
}

// ParseSigned checks the form of a signed checkpoint exactly as
// Cosignatures does (with or without keys): its size, the signature lines
// (one per key, canonical base64), and its body by Parse. It returns the
// parsed body and the body's text (up to and including its last newline),
// and verifies no signature. Errors wrap ErrMalformed.
func ParseSigned(signed []byte) (Checkpoint, []byte, error) {
	text, err := checkSignedNote(signed)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	c, err := Parse(text)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	return c, text, nil
}

// Cosignatures reports which of witnessKeys made a valid cosignature/v1 over
// the checkpoint in signed, and when. It does not check the log's signature:
// call it on a checkpoint Open has accepted (Policy.Verify does both).
//
// The result maps each cosigning key's KeyID ("name+hhhhhhhh", the vkey
// without its key) to the cosignature's timestamp, in UTC. The key ID rather
// than the name alone, because a name does not identify a key: a witness
// that rotates its key keeps its name. A checkpoint no witness cosigned gives
// an empty map and no error.
//
// As in Open, an invalid cosignature by one of witnessKeys is an error
// wrapping ErrUnverified, and malformed input one wrapping ErrMalformed.
// witnessKeys must be cosignature/v1 verifiers (NewWitnessVerifier): a
// valid signature of any other size is an error.
func Cosignatures(signed []byte, witnessKeys ...note.Verifier) (map[string]time.Time, error) {
	c, _, err := ParseSigned(signed)
	if err != nil {
		return nil, err
	}
	got := make(map[string]time.Time)
	if len(witnessKeys) == 0 {
		return got, nil
	}
	n, err := note.Open(signed, note.VerifierList(witnessKeys...))
	if _, ok := errors.AsType[*note.UnverifiedNoteError](err); ok {
		return got, nil
	}
	if err != nil {
		return nil, noteError(err, "witness", c.Origin)
	}
	for _, s := range n.Sigs {
		id := fmt.Sprintf("%s+%08x", s.Name, s.Hash)
		sig, err := decodeCanonicalBase64([]byte(s.Base64))
		if err != nil {
			return nil, malformedf("signature by %s: %v", id, err) // unreachable: checkSignedNote decoded it
		}
		if len(sig) != cosignatureSize {
			return nil, fmt.Errorf("checkpoint: signature by %s is %d bytes, not a cosignature/v1 (%d bytes): was a log key passed as a witness key?", id, len(sig), cosignatureSize)
		}
		ts := binary.BigEndian.Uint64(sig[4:12])
		if ts > math.MaxInt64 {
			return nil, malformedf("cosignature by %s has timestamp %d, beyond any time", id, ts)
		}
		got[id] = time.Unix(int64(ts), 0).UTC()
	}
	return got, nil
}

// checkSignedNote checks what sumdb/note.Open leaves lenient in a signed
// note and returns its text. note.Open decodes signature lines with
// encoding/base64, which accepts non-zero padding bits and skips CR and LF:
// the last character of an Ed25519 signature line can take several values
// that all verify. And it skips, unverified, every line after the first by
// a key it knows. We accept only canonical base64 and one line per key ID,
// so that a signed checkpoint has one valid text per set of signers.
func checkSignedNote(signed []byte) ([]byte, error) {
	if len(signed) > MaxCheckpointSize {
		return nil, malformedf("signed checkpoint is %d bytes, more than the limit of %d", len(signed), MaxCheckpointSize)
	}
	if err := checkNoteText(signed); err != nil {
		return nil, err
	}
	split := bytes.LastIndex(signed, []byte("\n\n"))
	if split < 0 {
		return nil, malformedf("signed checkpoint has no blank line before its signatures")
	}
	text, sigs := signed[:split+1], signed[split+2:]
	if len(sigs) == 0 {
		return nil, malformedf("signed checkpoint has no signature lines")
	}
	if sigs[len(sigs)-1] != '\n' {
		return nil, malformedf("signed checkpoint does not end with a newline")
	}
	lines := strings.Split(string(sigs[:len(sigs)-1]), "\n")
	if len(lines) > maxSignatures {
		return nil, malformedf("signed checkpoint has %d signatures, more than the limit of %d", len(lines), maxSignatures)
	}
	seen := make(map[string]int) // key ID: the signature line with it
	for i, line := range lines {
		rest, ok := strings.CutPrefix(line, "— ")
		if !ok {
			return nil, malformedf("signature line %d does not start with \"— \" (U+2014, space)", i+1)
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok || !validKeyName(name) {
			return nil, malformedf("signature line %d: want \"— name base64\" with a valid key name", i+1)
		}
		sig, err := decodeCanonicalBase64([]byte(b64))
		if err != nil {
			return nil, malformedf("signature line %d: %v", i+1, err)
		}
		if len(sig) < 5 {
			return nil, malformedf("signature line %d: %d bytes is too short for a key hash and a signature", i+1, len(sig))
		}
		id := fmt.Sprintf("%s+%08x", name, binary.BigEndian.Uint32(sig))
		if j, ok := seen[id]; ok {
			return nil, malformedf("signature lines %d and %d are both by key %s", j, i+1, id)
		}
		seen[id] = i + 1
	}
	return text, nil
}

// noteError translates an error from note.Open, which has already passed
// checkSignedNote, into one of ours.
func noteError(err error, role, origin string) error {
	if e, ok := errors.AsType[*note.UnverifiedNoteError](err); ok {
		return &sentinelError{ErrUnverified, fmt.Sprintf(
			"checkpoint for origin %q has no signature by the given %s keys (signed by %s)",
			origin, role, sigNames(e.Note.UnverifiedSigs))}
	}
	if e, ok := errors.AsType[*note.InvalidSignatureError](err); ok {
		return &sentinelError{ErrUnverified, fmt.Sprintf(
			"checkpoint for origin %q has an invalid signature by %s key %s+%08x", origin, role, e.Name, e.Hash)}
	}
	return fmt.Errorf("checkpoint: couldn't open signed checkpoint: %w", err)
}

func sigNames(sigs []note.Signature) string {
	if len(sigs) == 0 {
		return "no key"
	}
	ids := make([]string, len(sigs))
	for i, s := range sigs {
		ids[i] = fmt.Sprintf("%s+%08x", s.Name, s.Hash)
	}
	return strings.Join(ids, ", ")
}

// sentinelError is an error that matches a sentinel with errors.Is but
// carries its own, more precise message.
type sentinelError struct {
	is  error
	msg string
}

func (e *sentinelError) Error() string        { return "checkpoint: " + e.msg }
func (e *sentinelError) Is(target error) bool { return target == e.is }
