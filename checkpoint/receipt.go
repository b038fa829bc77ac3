package checkpoint

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// ProofHeader is the first line of a C2SP tlog-proof@v1 text.
const ProofHeader = "c2sp.org/tlog-proof@v1"

// MaxProofHashes bounds the inclusion proof of a tlog-proof: the proof in a
// tree of fewer than 2^64 entries has at most 64 hashes.
const MaxProofHashes = 64

// MaxProofSize bounds a tlog-proof text: its header lines, the hashes and a
// signed checkpoint of at most MaxCheckpointSize.
const MaxProofSize = MaxCheckpointSize + 8<<10

// A Proof is a C2SP tlog-proof@v1: an inclusion proof of the entry at Index
// in the tree of a signed checkpoint, which it carries verbatim. See the
// package doc for the text format; FormatProof writes it and ParseProof
// reads it.
type Proof struct {
	// Extra is the optional "extra" line's data (opaque to verifiers); nil
	// when there is none. Tidemark never writes one.
	Extra []byte
	// Index is the entry's index in the log.
	Index uint64
	// Hashes is the inclusion proof: the hashes from the leaf's sibling up
	// to the root, each HashSize bytes.
	Hashes [][]byte
	// Checkpoint is the signed checkpoint (a signed note with the log's
	// signature and cosignatures), byte for byte.
	Checkpoint []byte
}

// FormatProof returns p as a tlog-proof@v1 text. It does not check p: a
// Proof that ParseProof returned formats to the text it was parsed from.
func FormatProof(p Proof) []byte {
	var b bytes.Buffer
	b.WriteString(ProofHeader + "\n")
	if p.Extra != nil {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(p.Extra) + "\n")
	}
	fmt.Fprintf(&b, "index %d\n", p.Index)
	for _, h := range p.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// ParseProof parses a tlog-proof@v1 text, strictly: the header line exactly;
// at most one "extra" line, in canonical base64 and not empty; "index N" in
// canonical decimal; at most MaxProofHashes hashes, each HashSize bytes in
// canonical base64; an empty line; then the signed checkpoint, which must be
// a well-formed signed note (its signatures are checked by VerifyReceipt,
// not here). Every line ends in "\n"; nothing else is accepted. Errors wrap
// ErrMalformed.
func ParseProof(b []byte) (Proof, error) {
	if len(b) > MaxProofSize {
		return Proof{}, malformedf("proof is %d bytes, more than the limit of %d", len(b), MaxProofSize)
	}
	var p Proof
	rest := b
	line := 0
	next := func() (string, bool) {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return "", false
		}
		l := string(rest[:i])
		rest = rest[i+1:]
		line++
		return l, true
	}
	l, ok := next()
	if !ok || l != ProofHeader {
		return Proof{}, malformedf("proof does not start with the line %q", ProofHeader)
	}
	if l, ok = next(); !ok {
		return Proof{}, malformedf("proof ends after its header: want \"index N\"")
	}
	if v, found := strings.CutPrefix(l, "extra "); found {
		extra, err := decodeCanonicalBase64([]byte(v))
		if err != nil {
			return Proof{}, malformedf("proof line %d: extra data: %v", line, err)
		}
		p.Extra = extra
		if l, ok = next(); !ok {
			return Proof{}, malformedf("proof ends after its extra line: want \"index N\"")
		}
	}
	v, found := strings.CutPrefix(l, "index ")
	if !found {
		return Proof{}, malformedf("proof line %d: want \"index N\"", line)
	}
	idx, err := parseDecimal([]byte(v))
	if err != nil {
		return Proof{}, malformedf("proof line %d: index: %v", line, err)
	}
	p.Index = idx
	for {
		l, ok := next()
		if !ok {
			return Proof{}, malformedf("proof has no empty line before its checkpoint")
		}
		if l == "" {
			break
		}
		if len(p.Hashes) == MaxProofHashes {
			return Proof{}, malformedf("proof has more than %d hashes", MaxProofHashes)
		}
		h, err := decodeCanonicalBase64([]byte(l))
		if err != nil {
			return Proof{}, malformedf("proof line %d: hash %d: %v", line, len(p.Hashes)+1, err)
		}
		if len(h) != HashSize {
			return Proof{}, malformedf("proof line %d: hash %d is %d bytes, want %d", line, len(p.Hashes)+1, len(h), HashSize)
		}
		p.Hashes = append(p.Hashes, h)
	}
	text, err := checkSignedNote(rest)
	if err != nil {
		return Proof{}, malformedf("the proof's signed checkpoint: %s", trimPrefix(err))
	}
	if _, err := Parse(text); err != nil {
		return Proof{}, malformedf("the proof's checkpoint: %s", trimPrefix(err))
	}
	p.Checkpoint = bytes.Clone(rest)
	return p, nil
}

// VerifyReceipt checks, offline, that leaf is in the log of policy p: it
// parses proofText (ParseProof), checks its checkpoint with p.Verify (signed
// by one of the log's keys, old keys of a rotation included, and cosigned by
// a quorum of witnesses), refuses any signature line by a key p does not
// name, and checks the inclusion proof of leaf at the proof's index against
// the checkpoint. It returns the checkpoint and, for each witness that
// cosigned, its policy name and cosignature time.
//
// VerifyReceipt is stricter than signed-note, which lets verifiers skip
// signatures by unknown keys: a receipt is a closed record made for the
// holders of one policy, so a signature line that no key of the policy can
// check is a change to the receipt, and is refused (ErrUnverified).
//
// Errors wrap ErrMalformed, ErrUnverified, ErrQuorum or ErrProof, and say
// which part failed.
func VerifyReceipt(p *Policy, leaf, proofText []byte) (Checkpoint, map[string]time.Time, error) {
	pr, err := ParseProof(proofText)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	c, cosigners, err := p.Verify(pr.Checkpoint)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if err := checkAllSignaturesKnown(p, pr.Checkpoint); err != nil {
		return Checkpoint{}, nil, err
	}
	if err := VerifyInclusion(leaf, pr.Index, pr.Hashes, c); err != nil {
		return Checkpoint{}, nil, err
	}
	return c, cosigners, nil
}

// checkAllSignaturesKnown refuses a signed checkpoint with a signature line
// by a key that is not one of p's. Policy.Verify has checked every line by a
// key of p.
func checkAllSignaturesKnown(p *Policy, signed []byte) error {
	vs := p.LogVerifiers()
	for _, w := range p.Witnesses {
		vs = append(vs, w.Verifier)
	}
	n, err := note.Open(signed, note.VerifierList(vs...))
	if err != nil {
		return noteError(err, "policy", p.Origin()) // unreachable after Policy.Verify
	}
	if len(n.UnverifiedSigs) > 0 {
		return &sentinelError{ErrUnverified, fmt.Sprintf(
			"the receipt's checkpoint has a signature by %s, which is not a key of the policy: the receipt was changed, or made for another policy",
			sigNames(n.UnverifiedSigs))}
	}
	return nil
}

// A Receipt is what Tidemark hands a client for an entry: the entry's leaf
// and a tlog-proof@v1 of it. Its JSON form is the log's HTTP answer,
// {"index": N, "leaf": "<base64>", "proof": "<tlog-proof text>"}; the same
// JSON is what `tidemark verify` reads from a file. For a commitment leaf
// it may also carry the opening, {..., "opening": {"salt": "<base64>",
// "leaf": "<base64>"}}, so that its holder can show the event even after
// the log has erased it.
type Receipt struct {
	Index   uint64   `json:"index"`
	Leaf    []byte   `json:"leaf"`              // base64 in JSON
	Proof   string   `json:"proof"`             // a tlog-proof@v1 text
	Opening *Opening `json:"opening,omitempty"` // for a commitment leaf
}

// ParseReceipt reads a receipt in its JSON form. Unknown fields are
// refused, and the index must be the proof's.
func ParseReceipt(b []byte) (Receipt, error) {
	if len(b) > 2*(MaxProofSize+MaxLeafSize) {
		return Receipt{}, malformedf("receipt is %d bytes, too large", len(b))
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var r Receipt
	if err := d.Decode(&r); err != nil {
		return Receipt{}, malformedf("receipt is not the JSON {\"index\": N, \"leaf\": \"<base64>\", \"proof\": \"<tlog-proof>\"}: %v", err)
	}
	if d.More() {
		return Receipt{}, malformedf("receipt has more JSON after its object")
	}
	if r.Leaf == nil || r.Proof == "" {
		return Receipt{}, malformedf("receipt needs a \"leaf\" and a \"proof\"")
	}
	pr, err := ParseProof([]byte(r.Proof))
	if err != nil {
		return Receipt{}, err
	}
	if pr.Index != r.Index {
		return Receipt{}, malformedf("receipt says index %d but its proof is for index %d", r.Index, pr.Index)
	}
	if r.Opening != nil && KindOf(r.Leaf) != KindCommitment {
		return Receipt{}, malformedf("receipt has an opening, but its leaf is not a commitment leaf")
	}
	return r, nil
}

// Verify is VerifyReceipt of the receipt's leaf and proof, after checking
// that its index is the proof's.
func (r Receipt) Verify(p *Policy) (Checkpoint, map[string]time.Time, error) {
	pr, err := ParseProof([]byte(r.Proof))
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if pr.Index != r.Index {
		return Checkpoint{}, nil, malformedf("receipt says index %d but its proof is for index %d", r.Index, pr.Index)
	}
	c, cosigners, err := VerifyReceipt(p, r.Leaf, []byte(r.Proof))
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if r.Opening != nil {
		if _, err := r.Event(); err != nil {
			return Checkpoint{}, nil, err
		}
	}
	return c, cosigners, nil
}

// Event returns the event leaf the receipt shows: its leaf when that is an
// event leaf, or what its opening opens when the leaf is a commitment leaf.
// It checks the opening (Opening.Verify) but not the proof: call Verify for
// that. A commitment leaf without an opening, or a raw entry, shows no
// event (an error wrapping ErrNoEvent).
func (r Receipt) Event() (Leaf, error) {
	switch KindOf(r.Leaf) {
	case KindEvent:
		if r.Opening != nil {
			return Leaf{}, malformedf("receipt has an opening, but its leaf is not a commitment leaf")
		}
		return ParseLeaf(r.Leaf)
	case KindCommitment:
		c, err := ParseCommitmentLeaf(r.Leaf)
		if err != nil {
			return Leaf{}, err
		}
		if r.Opening == nil {
			return Leaf{}, fmt.Errorf("%w: the leaf is a commitment and the receipt has no opening", ErrNoEvent)
		}
		return r.Opening.Verify(c)
	}
	if r.Opening != nil {
		return Leaf{}, malformedf("receipt has an opening, but its leaf is not a commitment leaf")
	}
	return Leaf{}, fmt.Errorf("%w: the leaf is a %s entry", ErrNoEvent, KindOf(r.Leaf))
}

// ErrNoEvent is wrapped by Receipt.Event when a receipt shows no event.
var ErrNoEvent = errors.New("the receipt shows no event")
