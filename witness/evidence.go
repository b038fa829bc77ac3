package witness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Kinds of evidence.
const (
	// KindSplitView is two checkpoints for one origin and one size with
	// different root hashes, both validly signed by the log's key.
	KindSplitView = "split-view"
	// KindInconsistentProof is a checkpoint the witness cosigned (size m,
	// root R), a newer checkpoint signed by the log (size n, root N), and a
	// consistency proof that reproduces N from size m with a root R' != R.
	KindInconsistentProof = "inconsistent-proof"
)

// DefaultMaxEvidence is how many items of evidence the witness keeps per log.
const DefaultMaxEvidence = 16

// Evidence is proof, checkable by a stranger who has only the log's public
// key, that the log signed two views of its history that cannot both be
// true. See the package doc for what counts and why.
type Evidence struct {
	Origin string    `json:"origin"`
	Kind   string    `json:"kind"`
	Found  time.Time `json:"found"`
	// Checkpoints are the signed checkpoints in conflict, each with the log's
	// verified signature lines only: for a split view, the one the witness
	// had cosigned and the other; for an inconsistent proof, the cosigned one
	// (size m) and the newer one (size n).
	Checkpoints []string `json:"checkpoints"`
	// For KindInconsistentProof: the proof from size m to n, one base64 hash
	// each, and the root R' of the first m entries that it leads to.
	Proof        []string `json:"proof,omitempty"`
	ProofOldRoot string   `json:"proof_old_root,omitempty"`
	Explanation  string   `json:"explanation"`
}

// evidenceStore holds the evidence found, in memory and in the state
// database, at most max items per origin.
type evidenceStore struct {
	max int

	mu       sync.Mutex // guards byOrigin and seen
	byOrigin map[string][]Evidence
	seen     map[[32]byte]bool // digests of items held or being written
}

func loadEvidence(db *sql.DB, max int) (*evidenceStore, error) {
	e := &evidenceStore{max: max, byOrigin: map[string][]Evidence{}, seen: map[[32]byte]bool{}}
	rows, err := db.Query("SELECT digest, data FROM evidence ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("couldn't read the evidence: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var digest, data []byte
		if err := rows.Scan(&digest, &data); err != nil {
			return nil, fmt.Errorf("couldn't read the evidence: %w", err)
		}
		var ev Evidence
		if err := json.Unmarshal(data, &ev); err != nil {
			return nil, fmt.Errorf("couldn't read the evidence: %w", err)
		}
		e.byOrigin[ev.Origin] = append(e.byOrigin[ev.Origin], ev)
		e.seen[[32]byte(digest)] = true
	}
	return e, rows.Err()
}

// all returns every item, ordered by origin then time found.
func (e *evidenceStore) all() []Evidence {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []Evidence{}
	origins := make([]string, 0, len(e.byOrigin))
	for o := range e.byOrigin {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	for _, o := range origins {
		out = append(out, e.byOrigin[o]...)
	}
	return out
}

func (e *evidenceStore) count(origin string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.byOrigin[origin])
}

// record stores ev durably unless an item with the same digest is already
// held or the origin's cap is reached; it reports whether it stored it.
func (w *Witness) recordEvidence(ctx context.Context, ev Evidence, digest [32]byte) {
	e := w.evidence
	e.mu.Lock()
	if e.seen[digest] {
		e.mu.Unlock()
		return
	}
	full := len(e.byOrigin[ev.Origin]) >= e.max
	if !full {
		e.seen[digest] = true
	}
	e.mu.Unlock()

	w.log.Error("EVIDENCE OF LOG MISBEHAVIOUR: the log signed two views of its history that cannot both be true",
		"origin", ev.Origin, "kind", ev.Kind, "explanation", ev.Explanation, "stored", !full)
	w.metrics.evidence.WithLabelValues(ev.Kind).Inc()
	if full {
		w.metrics.evidenceDropped.Inc()
		return
	}
	data, err := json.Marshal(ev)
	if err == nil {
		err = w.state.commit(context.WithoutCancel(ctx), nil, func(tx *sql.Tx) error {
			_, err := tx.Exec("INSERT OR IGNORE INTO evidence(origin, digest, found, data) VALUES (?, ?, ?, ?)",
				ev.Origin, digest[:], ev.Found.UnixNano(), data)
			return err
		})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		delete(e.seen, digest)
		w.log.Error("couldn't store evidence; it is in this log message only", "origin", ev.Origin, "err", err, "evidence", string(data))
		return
	}
	e.byOrigin[ev.Origin] = append(e.byOrigin[ev.Origin], ev)
}

// splitView returns the evidence that old and the new checkpoint c (signed
// as newSigned, log signatures only), of the same size, have different roots.
func splitView(origin string, old *record, c checkpoint.Checkpoint, newSigned []byte, now time.Time) (Evidence, [32]byte) {
	a, b := old.signedNote(), newSigned
	ev := Evidence{
		Origin: origin, Kind: KindSplitView, Found: now.UTC(),
		Checkpoints: []string{string(a), string(b)},
		Explanation: "both checkpoints are signed by the log's key, have tree size " + strconv.FormatUint(c.Size, 10) +
			" and different root hashes: a log that signs two different trees of one size shows different histories to different people",
	}
	// The digest ignores which one came first, so the pair is held once.
	r1, r2 := old.Root, c.Hash
	if bytes.Compare(r1, r2) > 0 {
		r1, r2 = r2, r1
	}
	return ev, digestOf(KindSplitView, origin, strconv.FormatUint(c.Size, 10), r1, r2)
}

// inconsistentProof looks at a consistency proof that failed to lead from
// the cosigned checkpoint old (size m, root R) to the new checkpoint c
// (size n, root N). If the proof does lead to N from some other root R' of
// the first m entries, the log's own signed tree N contains a prefix that
// differs from the R it signed before: that is evidence, and it returns it.
//
// Why a requester alone cannot make this up: N is signed by the log, so
// reproducing it from R' needs hashes under N's root, and the old
// checkpoint is signed by the log too. Without the log's key, nobody can
// produce this triple unless the log's trees really disagree (or SHA-256 is
// broken). A proof that simply fails proves nothing: anyone can send one.
//
// R' is known from the proof itself only when m is not a power of two (the
// proof then starts with the hash of the largest subtree ending at m, from
// which the verifier rebuilds R'). When m is a power of two the proof takes
// R as given, and a failing proof says nothing about R'.
func inconsistentProof(origin string, old *record, proofHashes [][]byte, c checkpoint.Checkpoint, newSigned []byte, now time.Time) (Evidence, [32]byte, bool) {
	if old == nil || old.Size == 0 || old.Size >= c.Size {
		return Evidence{}, [32]byte{}, false
	}
	// The merkle library checks the old root first: its mismatch error
	// carries the root R' that the proof computes for the first m entries.
	err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, c.Size, proofHashes, old.Root, c.Hash)
	var mismatch proof.RootMismatchError
	if !errors.As(err, &mismatch) || !bytes.Equal(mismatch.ExpectedRoot, old.Root) || bytes.Equal(mismatch.CalculatedRoot, old.Root) {
		return Evidence{}, [32]byte{}, false
	}
	other := mismatch.CalculatedRoot
	if checkpoint.VerifyConsistency(old.Size, other, proofHashes, c) != nil {
		return Evidence{}, [32]byte{}, false
	}
	p := make([]string, len(proofHashes))
	for i, h := range proofHashes {
		p[i] = base64.StdEncoding.EncodeToString(h)
	}
	ev := Evidence{
		Origin: origin, Kind: KindInconsistentProof, Found: now.UTC(),
		Checkpoints:  []string{string(old.signedNote()), string(newSigned)},
		Proof:        p,
		ProofOldRoot: base64.StdEncoding.EncodeToString(other),
		Explanation: fmt.Sprintf("both checkpoints are signed by the log's key; the proof verifies from tree size %d with root %s to the second checkpoint, "+
			"but the first checkpoint, the log's own, gives size %d the root %s: the second tree does not extend the first",
			old.Size, base64.StdEncoding.EncodeToString(other), old.Size, base64.StdEncoding.EncodeToString(old.Root)),
	}
	return ev, digestOf(KindInconsistentProof, origin, strconv.FormatUint(old.Size, 10), old.Root, []byte(strconv.FormatUint(c.Size, 10)), c.Hash), true
}

func digestOf(parts ...any) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		var b []byte
		switch p := p.(type) {
		case string:
			b = []byte(p)
		case []byte:
			b = p
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return [32]byte(h.Sum(nil))
}
