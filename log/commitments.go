package log

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// A commitment log (Config.Leaves = LeavesCommitment, leafmode.go) appends,
// for each event, a commitment leaf to the event leaf E it would have
// appended in event mode: SHA-256(salt || E) with a salt of 32 random bytes,
// beside E's "received" and "source" (checkpoint.CommitmentLeaf). The salt
// and E go to the payload store (payloads.go) first. Everything that reads
// events from the log (the idempotency index's recovery, search, receipts)
// opens each commitment leaf from the store, and checks the opening
// against the commitment before it believes it: an entry whose row is gone
// (erased) has no event any more.

// commitLeaves, in a commitment log, makes the commitment leaf of every
// event this request appends (those the idempotency index did not
// answer), each to a new salt, and writes the salts and event leaves to the
// payload store durably before anything is appended. On failure nothing is
// appended and the request's claims are released.
func (s *Server) commitLeaves(ctx context.Context, bt *built, claims *batch) error {
	if s.payloads == nil {
		return nil
	}
	n := len(bt.leaves)
	bt.commits = make([][]byte, n)
	bt.openings = make([]*checkpoint.Opening, n)
	rows := make([]payload, 0, n)
	for i, leaf := range bt.leaves {
		if leaf == nil || !claims.appends(i) {
			continue
		}
		salt, err := checkpoint.NewSalt()
		if err != nil {
			return s.commitFailed(claims, fmt.Errorf("couldn't draw a salt: %w", err))
		}
		c := checkpoint.CommitmentLeaf{Received: bt.received[i], Source: bt.source, Commitment: checkpoint.Commit(salt, leaf)}
		bt.commits[i] = checkpoint.AppendCommitmentLeaf(nil, c)
		bt.openings[i] = &checkpoint.Opening{Salt: salt, Leaf: leaf}
		rows = append(rows, payload{key: payloadKeyOf(c), salt: salt, leaf: leaf})
	}
	started := time.Now()
	if err := s.payloads.put(ctx, rows); err != nil {
		return s.commitFailed(claims, err)
	}
	s.erasureMetrics.payloadWrite.Observe(time.Since(started).Seconds())
	return nil
}

// commitFailed releases the request's claims and refuses it: nothing was
// appended.
func (s *Server) commitFailed(claims *batch, err error) error {
	if claims != nil {
		claims.finish(nil, err)
	}
	s.log.Warn("a write was refused: its events could not be written to the payload store", "err", err)
	e := errorf(http.StatusServiceUnavailable, "payloads_unavailable", "the payload store could not record this request's events; nothing was logged: retry")
	e.retryAfter = 1
	return e
}

// looksCommitment and looksErasure are the first look of a scan over the
// log's entries (checkpoint.FirstMemberKind); the Parse function that
// follows checks the whole leaf.
func looksCommitment(e []byte) bool {
	return checkpoint.FirstMemberKind(e) == checkpoint.KindCommitment
}
func looksErasure(e []byte) bool { return checkpoint.FirstMemberKind(e) == checkpoint.KindErasure }

// payloadKeyOf is the payload store's key of a commitment leaf.
func payloadKeyOf(c checkpoint.CommitmentLeaf) payloadKey {
	return payloadKey{receivedNS: c.Received.UnixNano(), commitment: c.Commitment}
}

// openEntries opens the commitment leaves among entries from the payload
// store, in one query: opened[i] is the checked opening of entries[i], or
// nil when entries[i] is not a commitment leaf or its row is gone (erased).
// A row that does not open its commitment is an error: the store was
// changed. indexOf(i) is the index of entries[i], for that error.
func (s *Server) openEntries(ctx context.Context, indexOf func(i int) uint64, entries [][]byte) ([]*checkpoint.Opening, error) {
	return s.openEntriesAs(ctx, indexOf, entries, badRefuse)
}

// What openEntriesAs does with a row that does not open its commitment
// (the store was changed), besides counting and logging it.
type badRow int

const (
	badRefuse badRow = iota // an error: receipts are never made from it
	badSkip                 // as if erased: readers of events (search, the idempotency index) go on without it
	badServe                // returned all the same: GET /v1/payloads serves it to auditors, the judges of it; erasure deletes it
)

// openEntriesAs is openEntries, with bad rows treated as bad says.
func (s *Server) openEntriesAs(ctx context.Context, indexOf func(i int) uint64, entries [][]byte, bad badRow) ([]*checkpoint.Opening, error) {
	out := make([]*checkpoint.Opening, len(entries))
	if s.payloads == nil {
		return out, nil
	}
	leaves := make([]checkpoint.CommitmentLeaf, len(entries))
	var keys []payloadKey
	for i, e := range entries {
		if !looksCommitment(e) {
			continue
		}
		c, err := checkpoint.ParseCommitmentLeaf(e)
		if err != nil {
			continue // not a leaf this log writes: nothing to open
		}
		leaves[i] = c
		keys = append(keys, payloadKeyOf(c))
	}
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.payloads.get(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("couldn't read the payload store: %w", err)
	}
	for i := range entries {
		if leaves[i].Received.IsZero() {
			continue
		}
		r, ok := rows[payloadKeyOf(leaves[i])]
		if !ok {
			continue
		}
		o := &checkpoint.Opening{Salt: r.salt, Leaf: r.leaf}
		if _, err := o.Verify(leaves[i]); err != nil {
			s.erasureMetrics.badPayloads.Inc()
			err := fmt.Errorf("the payload store's row for entry %d does not open its commitment (%v): the store was changed; restore it from a backup", indexOf(i), err)
			switch bad {
			case badRefuse:
				return nil, err
			case badSkip:
				s.log.Error("a payload that does not open its commitment is left out", "index", indexOf(i), "err", err)
				continue
			}
			s.log.Error("a payload that does not open its commitment is served as it is, for auditors to see", "index", indexOf(i), "err", err)
		}
		out[i] = o
	}
	return out, nil
}

// only is the indexOf of openEntries for a single entry.
func only(index uint64) func(int) uint64 { return func(int) uint64 { return index } }

// openedBundle reads an entry bundle as readers of events see it: in a
// commitment log each commitment leaf whose row exists is replaced by the
// event leaf it opens to, and an erased one stays as it is (no reader of
// events takes it for one).
func (s *Server) openedBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	raw, err := s.reader.ReadEntryBundle(ctx, index, p)
	if err != nil || s.payloads == nil {
		return raw, err
	}
	return s.openBundle(ctx, index, raw)
}

// openBundle is openedBundle of the bundle index, read as raw.
func (s *Server) openBundle(ctx context.Context, index uint64, raw []byte) ([]byte, error) {
	var b api.EntryBundle
	if err := b.UnmarshalText(raw); err != nil {
		return nil, err
	}
	opened, err := s.openEntriesAs(ctx, func(i int) uint64 { return index*layout.EntryBundleWidth + uint64(i) }, b.Entries, badSkip)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(raw))
	for i, e := range b.Entries {
		if opened[i] != nil {
			e = opened[i].Leaf
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out, nil
}

// openingAt reads the entry at index (waiting, briefly, for it to be
// integrated: a duplicate's entry may still be on its way) and opens it. It
// returns the entry and its opening (nil when it is not a commitment leaf,
// or erased).
func (s *Server) openingAt(ctx context.Context, index uint64) ([]byte, *checkpoint.Opening, error) {
	size, err := s.waitIntegrated(ctx, index)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := s.readLeaf(ctx, index, size)
	if err != nil {
		return nil, nil, err
	}
	o, err := s.openEntries(ctx, only(index), [][]byte{leaf})
	if err != nil {
		return nil, nil, err
	}
	return leaf, o[0], nil
}

// waitIntegrated waits, up to 10 s, until the tree holds index, and
// returns its size then.
func (s *Server) waitIntegrated(ctx context.Context, index uint64) (uint64, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		size, err := s.integratedSize()
		if err != nil {
			return 0, fmt.Errorf("couldn't read the tree size: %w", err)
		}
		if index < size {
			return size, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("entry %d was not integrated within 10 s", index)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// openDuplicates gives each duplicate of a commitment log's request the
// salt of the entry it duplicates, once that entry's opening is found to
// hold the event the request sent. A retried batch is read a bundle at a
// time and opened in one query.
func (s *Server) openDuplicates(ctx context.Context, results []eventResult) error {
	if s.payloads == nil {
		return nil
	}
	var pos []int
	var last uint64
	for i, r := range results {
		if r.Duplicate && r.event != nil {
			pos = append(pos, i)
			last = max(last, r.Index)
		}
	}
	if len(pos) == 0 {
		return nil
	}
	size, err := s.waitIntegrated(ctx, last)
	if err != nil {
		return err
	}
	lr := leafReader{s: s, ctx: ctx, size: size}
	entries := make([][]byte, len(pos))
	for k, i := range pos {
		if entries[k], err = lr.read(results[i].Index); err != nil {
			return fmt.Errorf("couldn't read entry %d, which a duplicate names: %w", results[i].Index, err)
		}
	}
	opened, err := s.openEntries(ctx, func(k int) uint64 { return results[pos[k]].Index }, entries)
	if err != nil {
		return err
	}
	for k, i := range pos {
		r, o := &results[i], opened[k]
		if o == nil {
			continue // erased since: the duplicate has no opening any more
		}
		if !leafHoldsEvent(o.Leaf, r.event) {
			return fmt.Errorf("entry %d, answered as a duplicate, does not open to the event sent: refusing to answer with its salt", r.Index)
		}
		r.opening, r.Salt = o, o.Salt
	}
	return nil
}
