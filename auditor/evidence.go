package auditor

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// Kinds of evidence; the names and JSON fields are those of the witness's
// evidence (GET /evidence), so CheckEvidence re-checks either.
const (
	EvidenceSplitView         = "split-view"
	EvidenceInconsistentProof = "inconsistent-proof"
)

// Evidence is what proves, to anyone holding the log's public key, that the
// log signed two views of its history that cannot both be true:
//
//   - split-view: two checkpoints of one size with different roots;
//   - inconsistent-proof: a checkpoint A (size m, root R), a bigger
//     checkpoint B (size n, root N), and a consistency proof that leads from
//     a root R' != R of size m to N. Both are signed by the log, so B's tree
//     begins with a tree of m leaves other than the one A signed.
//
// Nothing else in it needs trusting: CheckEvidence re-derives the verdict
// from the signed checkpoints and the proof, with only the policy.
type Evidence struct {
	Origin string    `json:"origin"`
	Kind   string    `json:"kind"`
	Found  time.Time `json:"found"`
	// Checkpoints are the two signed checkpoints, verbatim as served
	// (cosignatures included), the smaller or older first.
	Checkpoints []string `json:"checkpoints"`
	// Sources say where each checkpoint came from.
	Sources []string `json:"sources,omitempty"`
	// Proof (base64 hashes) and ProofOldRoot (R', base64) for
	// inconsistent-proof.
	Proof        []string `json:"proof,omitempty"`
	ProofOldRoot string   `json:"proof_old_root,omitempty"`
	Explanation  string   `json:"explanation"`
}

// Verdicts of CheckEvidence, also the exit statuses of
// `tidemark audit --check-evidence`.
const (
	VerdictNoMisbehaviour = 0 // the evidence does not prove misbehaviour
	VerdictMisbehaviour   = 1 // it proves that the log signed two incompatible views
	VerdictCannotTell     = 2 // it cannot be checked with this policy
)

// CheckEvidence re-checks evidence with nothing but the policy: both
// checkpoints must be signed by one of the policy's log keys. It returns a
// verdict and a statement of why.
func CheckEvidence(p *checkpoint.Policy, data []byte) (int, string) {
	var ev Evidence
	if err := json.Unmarshal(data, &ev); err != nil {
		return VerdictCannotTell, fmt.Sprintf("not an evidence file: %v", err)
	}
	if len(ev.Checkpoints) != 2 {
		return VerdictCannotTell, fmt.Sprintf("evidence holds %d checkpoints, want 2", len(ev.Checkpoints))
	}
	var cs [2]checkpoint.Checkpoint
	for i, s := range ev.Checkpoints {
		c, _, err := checkpoint.Open([]byte(s), p.LogVerifiers()...)
		if err != nil {
			return VerdictCannotTell, fmt.Sprintf("checkpoint %d is not signed by the policy's log key, so it proves nothing about this log: %v", i+1, err)
		}
		cs[i] = c
	}
	a, b := cs[0], cs[1]
	if a.Size > b.Size {
		a, b = b, a
	}
	if a.Size == b.Size {
		if bytes.Equal(a.Hash, b.Hash) {
			return VerdictNoMisbehaviour, fmt.Sprintf("both checkpoints have size %d and the same root: no conflict", a.Size)
		}
		return VerdictMisbehaviour, fmt.Sprintf("MISBEHAVIOUR: the log %q signed two checkpoints of size %d with different roots (%s and %s)",
			a.Origin, a.Size, b64(a.Hash), b64(b.Hash))
	}
	proof := make([][]byte, len(ev.Proof))
	for i, s := range ev.Proof {
		h, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return VerdictCannotTell, fmt.Sprintf("proof hash %d is not base64: %v", i+1, err)
		}
		proof[i] = h
	}
	if checkpoint.VerifyConsistency(a.Size, a.Hash, proof, b) == nil {
		return VerdictNoMisbehaviour, fmt.Sprintf("the proof shows that size %d extends size %d: the checkpoints are consistent", b.Size, a.Size)
	}
	other, err := base64.StdEncoding.DecodeString(ev.ProofOldRoot)
	if err != nil || len(other) != checkpoint.HashSize {
		return VerdictCannotTell, "the proof does not verify and there is no other old root (proof_old_root) it leads from: a bad proof alone proves nothing"
	}
	if bytes.Equal(other, a.Hash) {
		return VerdictCannotTell, "proof_old_root is the first checkpoint's own root, and the proof does not verify from it: a bad proof alone proves nothing"
	}
	if err := checkpoint.VerifyConsistency(a.Size, other, proof, b); err != nil {
		return VerdictCannotTell, fmt.Sprintf("the proof does not verify from proof_old_root either (%v): a bad proof alone proves nothing", err)
	}
	return VerdictMisbehaviour, fmt.Sprintf("MISBEHAVIOUR: the log %q signed size %d with root %s, but its checkpoint of size %d contains, by the proof, a tree of size %d with root %s: the second does not extend the first",
		a.Origin, a.Size, b64(a.Hash), b.Size, a.Size, b64(other))
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// writeEvidence writes ev to the evidence directory, named by its content
// so that the same conflict seen again is one file, and returns the path.
func (a *Auditor) writeEvidence(ev Evidence) (string, error) {
	dir := a.cfg.EvidenceDir
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("couldn't create the evidence directory: %w", err)
	}
	h := sha256.New()
	for _, c := range ev.Checkpoints {
		cb, err := checkpoint.Parse(noteText([]byte(c)))
		if err == nil {
			h.Write(checkpoint.Format(cb))
		}
	}
	name := fmt.Sprintf("%s-%s.json", ev.Kind, hex.EncodeToString(h.Sum(nil))[:16])
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	b, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return "", err
	}
	return path, writeFileAtomic(path, append(b, '\n'))
}

// noteText returns the text of a signed note: everything before the blank
// line.
func noteText(signed []byte) []byte {
	if i := bytes.Index(signed, []byte("\n\n")); i >= 0 {
		return signed[:i+1]
	}
	return signed
}

// splitView records a split view between two log-signed checkpoints of one
// size, with evidence.
func (a *Auditor) splitView(r *Report, first, second []byte, src1, src2 string, c1, c2 checkpoint.Checkpoint) {
	ev := Evidence{
		Origin: a.origin, Kind: EvidenceSplitView, Found: a.cfg.Now().UTC(),
		Checkpoints: []string{string(first), string(second)},
		Sources:     []string{src1, src2},
		Explanation: "both checkpoints are signed by the log's key, have tree size " + strconv.FormatUint(c1.Size, 10) +
			" and different root hashes: the log shows different histories to different people",
	}
	a.evidence(r, ev, fmt.Sprintf("split view: %s has size %d with root %s, %s has the same size with root %s",
		src1, c1.Size, b64(c1.Hash), src2, b64(c2.Hash)))
}

// inconsistent records evidence that newer (size n) does not extend older
// (size m): proof leads from otherRoot, not older's root, to newer's root.
func (a *Auditor) inconsistent(r *Report, older, newer []byte, src1, src2 string, c1, c2 checkpoint.Checkpoint, proof [][]byte, otherRoot []byte) {
	p := make([]string, len(proof))
	for i, h := range proof {
		p[i] = b64(h)
	}
	ev := Evidence{
		Origin: a.origin, Kind: EvidenceInconsistentProof, Found: a.cfg.Now().UTC(),
		Checkpoints: []string{string(older), string(newer)},
		Sources:     []string{src1, src2},
		Proof:       p, ProofOldRoot: b64(otherRoot),
		Explanation: fmt.Sprintf("both checkpoints are signed by the log's key; the proof (built from the log's tiles) verifies from tree size %d with root %s to the second checkpoint, "+
			"but the first checkpoint gives size %d the root %s: the second tree does not extend the first",
			c1.Size, b64(otherRoot), c1.Size, b64(c1.Hash)),
	}
	a.evidence(r, ev, fmt.Sprintf("split view: %s (size %d) does not extend %s (size %d): the log's tree of size %d begins with root %s, not %s",
		src2, c2.Size, src1, c1.Size, c2.Size, b64(otherRoot), b64(c1.Hash)))
}

func (a *Auditor) evidence(r *Report, ev Evidence, msg string) {
	f := Finding{Kind: KindSplitView, Message: msg, key: "evidence:" + ev.Checkpoints[0] + ev.Checkpoints[1],
		Details: map[string]any{"checkpoints": ev.Checkpoints, "sources": ev.Sources}}
	path, err := a.writeEvidence(ev)
	if err != nil {
		f.Message += fmt.Sprintf(" (evidence NOT written: %v; it is in this finding's details)", err)
		f.Details["evidence"] = ev
	}
	f.Evidence = path
	a.add(r, f)
}
