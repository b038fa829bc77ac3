package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// The outcomes of add-checkpoint other than success, one per status of
// tlog-witness v1.0.0 (plus the witness's own limits). http.go maps them to
// statuses in one switch.
var (
	errMalformed     = errors.New("malformed request")                                                     // 400
	errOldTooLarge   = errors.New("old size is larger than the checkpoint's size")                         // 400
	errUnknownOrigin = errors.New("unknown log origin")                                                    // 404
	errUnverified    = errors.New("no valid signature by a trusted key of the log")                        // 403
	errRootConflict  = errors.New("the checkpoint has the size of the cosigned one but another root hash") // 409
	errBadProof      = errors.New("the consistency proof does not verify")                                 // 422
)

// A sizeConflictError is a request whose old size is not the size of the
// last checkpoint the witness cosigned for the origin (409, with the size).
type sizeConflictError struct{ size uint64 }

func (e *sizeConflictError) Error() string {
	return fmt.Sprintf("old size does not match the last cosigned checkpoint, of size %d", e.size)
}

// A rateLimitedError is a request over the log's or the witness's limit (429).
type rateLimitedError struct{ retryAfter int }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("too many requests: try again in %d s", e.retryAfter)
}

// maxProofLines is tlog-witness's limit on consistency proof lines.
const maxProofLines = 63

// MaxRequestSize bounds an add-checkpoint body: the old size line, 63 proof
// lines, the blank line and a signed checkpoint.
const MaxRequestSize = len("old 18446744073709551615\n") + maxProofLines*45 + 1 + checkpoint.MaxCheckpointSize

// An AddRequest is the body of a tlog-witness add-checkpoint request.
type AddRequest struct {
	Old        uint64   // the size of the last checkpoint the client believes the witness cosigned
	Proof      [][]byte // consistency proof from Old to the checkpoint's size, 32-byte hashes
	Checkpoint []byte   // the signed checkpoint
}

// ParseAddRequest parses an add-checkpoint body strictly: "old N" with N a
// canonical decimal, at most 63 proof lines each the canonical base64 of 32
// bytes, an empty line, then a non-empty signed checkpoint (checked later).
// Errors wrap errMalformed.
func ParseAddRequest(b []byte) (AddRequest, error) {
	var r AddRequest
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return r, fmt.Errorf("%w: no old size line", errMalformed)
	}
	num, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return r, fmt.Errorf("%w: the first line must be \"old <size>\"", errMalformed)
	}
	old, err := parseSize(num)
	if err != nil {
		return r, fmt.Errorf("%w: old size: %v", errMalformed, err)
	}
	r.Old = old
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return r, fmt.Errorf("%w: no empty line before the checkpoint", errMalformed)
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == maxProofLines {
			return r, fmt.Errorf("%w: more than %d consistency proof lines", errMalformed, maxProofLines)
		}
		h, ok := decodeHash(line)
		if !ok {
			return r, fmt.Errorf("%w: proof line %d is not the canonical base64 of a 32-byte hash", errMalformed, len(r.Proof)+1)
		}
		r.Proof = append(r.Proof, h)
	}
	if len(rest) == 0 {
		return r, fmt.Errorf("%w: no checkpoint after the empty line", errMalformed)
	}
	r.Checkpoint = rest
	return r, nil
}

// strictBase64 refuses non-zero padding bits (Strict), and CR and LF, which
// encoding/base64 skips, cannot be in a line.
var strictBase64 = base64.StdEncoding.Strict()

// hashLineLen is the length of the base64 of a 32-byte hash.
var hashLineLen = base64.StdEncoding.EncodedLen(checkpoint.HashSize)

// decodeHash decodes a proof line that must be exactly the canonical base64
// of a 32-byte hash: 44 characters, one '=' of padding, zero padding bits,
// without allocating more than the hash.
func decodeHash(line []byte) ([]byte, bool) {
	if len(line) != hashLineLen {
		return nil, false
	}
	h := make([]byte, checkpoint.HashSize+1) // room for Decode's last group
	n, err := strictBase64.Decode(h, line)
	if err != nil || n != checkpoint.HashSize {
		return nil, false
	}
	var again [44]byte // and nothing else encodes to it (CR, which Decode skips)
	base64.StdEncoding.Encode(again[:], h[:n])
	if !bytes.Equal(again[:], line) {
		return nil, false
	}
	return h[:n:n], true
}

// parseSize parses a canonical decimal: digits only, no leading zeros.
func parseSize(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 || (len(b) > 1 && b[0] == '0') {
		return 0, fmt.Errorf("%q is not a decimal without leading zeros", b)
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal", b)
		}
	}
	return strconv.ParseUint(string(b), 10, 64)
}

// Add is add-checkpoint as a plain function: it checks req against what the
// witness cosigned for the checkpoint's origin and, if it extends it,
// stores the checkpoint durably and returns the witness's cosignature line.
// The checks come in the order of tlog-witness v1.0.0: origin known (404),
// signed by a trusted key (403), old not beyond the size (400), old equal to
// the stored size (409 with the size), equal sizes with equal roots (409),
// the consistency proof (422). A request for the very checkpoint already
// cosigned is a repeat: it gets a fresh cosignature, answered from memory,
// with nothing written and no rate limit charged.
func (w *Witness) Add(ctx context.Context, req AddRequest) ([]byte, error) {
	return w.add(ctx, req, false)
}

// add is Add; internal requests (the poller's) skip the rate limits.
func (w *Witness) add(ctx context.Context, req AddRequest, internal bool) ([]byte, error) {
	c, text, err := parseSigned(req.Checkpoint)
	if err != nil {
		return nil, err
	}
	kl := w.logs.Load().byOrigin[c.Origin]
	if kl == nil {
		return nil, fmt.Errorf("%w %q", errUnknownOrigin, c.Origin)
	}
	logSigs, err := verifyLogSignature(req.Checkpoint, text, c, kl)
	if err != nil {
		return nil, err
	}
	if req.Old > c.Size {
		return nil, fmt.Errorf("%w: old %d, checkpoint %d", errOldTooLarge, req.Old, c.Size)
	}
	o := w.state.entry(c.Origin)
	if err := o.lock(ctx); err != nil {
		return nil, err
	}
	defer o.unlock()
	old := o.rec
	var size uint64
	if old != nil {
		size = old.Size
	}
	signed := append(append(append([]byte{}, text...), '\n'), logSigs...)

	// Two log-signed checkpoints of one size with different roots are
	// evidence, whatever old size the request claims.
	if old != nil && c.Size == old.Size && !bytes.Equal(c.Hash, old.Root) {
		ev, digest := splitView(c.Origin, old, c, signed, w.now())
		w.recordEvidence(ctx, ev, digest)
	}
	if req.Old != size {
		return nil, &sizeConflictError{size: size}
	}
	if req.Old == c.Size {
		root := rfc6962.DefaultHasher.EmptyRoot() // never cosigned: the empty tree
		if old != nil {
			root = old.Root
		}
		if !bytes.Equal(c.Hash, root) {
			return nil, errRootConflict
		}
		if len(req.Proof) != 0 {
			return nil, fmt.Errorf("%w: the sizes are equal, so the proof must be empty", errBadProof)
		}
		if old != nil && bytes.Equal(old.Body, text) {
			w.metrics.repeats.Inc()
			return w.cosign(text)
		}
	} else if req.Old == 0 {
		if len(req.Proof) != 0 {
			return nil, fmt.Errorf("%w: old size is 0, so the proof must be empty", errBadProof)
		}
	} else if err := checkpoint.VerifyConsistency(old.Size, old.Root, req.Proof, c); err != nil {
		if ev, digest, ok := inconsistentProof(c.Origin, old, req.Proof, c, signed, w.now()); ok {
			w.recordEvidence(ctx, ev, digest)
		}
		return nil, fmt.Errorf("%w: %v", errBadProof, err)
	}

	// The checkpoint advances the state: charge it, sign, store, answer.
	if !internal {
		if ok, retry := w.limits.take(c.Origin, kl.qpd); !ok {
			return nil, &rateLimitedError{retryAfter: retry}
		}
	}
	retract := w.state.expect() // the writer may wait for this write (group commit)
	defer retract()
	cosig, err := w.cosign(text)
	if err == nil {
		rec := &record{Size: c.Size, Root: c.Hash, Body: text, LogSigs: logSigs, Cosig: cosig, Updated: w.now().UTC()}
		err = w.state.swap(ctx, c.Origin, o, old, rec, retract)
	}
	if err != nil {
		if !internal {
			w.limits.refund(c.Origin, kl.qpd)
		}
		if errors.Is(err, errCAS) {
			w.log.Error("the stored checkpoint changed under a request holding its lock: is another process writing the state?", "origin", c.Origin)
		}
		return nil, err
	}
	w.metrics.cosigned.Inc()
	return cosig, nil
}

// parseSigned checks that signed is a well-formed signed checkpoint (strict
// signed-note and tlog-checkpoint, by checkpoint's rules) and returns its
// body, parsed and as text. Errors wrap errMalformed.
func parseSigned(signed []byte) (checkpoint.Checkpoint, []byte, error) {
	// What Open checks of the form (size, canonical base64, one line per
	// key, the body), and nothing else, parsing the body once.
	c, text, err := checkpoint.ParseSigned(signed)
	if err != nil {
		return checkpoint.Checkpoint{}, nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	return c, text, nil
}

// verifyLogSignature checks that one of the log's keys signed the checkpoint
// and returns the valid signature lines by the log's keys: the only
// signature lines the witness keeps. Signatures by other keys are ignored,
// as signed-note requires; an invalid one by a log key is refused.
//
// fastVerify (verify.go) accepts what it can; the rest is decided here, by
// checkpoint.Open and note.Open, which also word the errors.
func verifyLogSignature(signed, text []byte, c checkpoint.Checkpoint, kl *knownLog) ([]byte, error) {
	if lines, ok := fastVerify(signed, text, kl); ok {
		return lines, nil
	}
	return openLogSignature(signed, c, kl)
}

// openLogSignature is verifyLogSignature by the libraries alone.
func openLogSignature(signed []byte, c checkpoint.Checkpoint, kl *knownLog) ([]byte, error) {
	var n *note.Note
	var err error
	if kl.namedByOrigin() {
		_, n, err = checkpoint.Open(signed, kl.verifiers...)
	} else {
		// A log list's "origin" line may name an origin other than the key's
		// name, which checkpoint.Open (rightly, for policies) refuses.
		n, err = note.Open(signed, note.VerifierList(kl.verifiers...))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnverified, err)
	}
	var lines []byte
	for _, s := range n.Sigs {
		lines = fmt.Appendf(lines, "— %s %s\n", s.Name, s.Base64)
	}
	return lines, nil
}

func (kl *knownLog) namedByOrigin() bool {
	for _, v := range kl.verifiers {
		if v.Name() != kl.origin {
			return false
		}
	}
	return true
}

// cosign returns the witness's cosignature line for a checkpoint body,
// timestamped now.
func (w *Witness) cosign(text []byte) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: string(text)}, w.signer)
	if err != nil {
		return nil, fmt.Errorf("couldn't cosign: %w", err)
	}
	return signed[bytes.LastIndex(signed, []byte("\n\n"))+2:], nil
}
