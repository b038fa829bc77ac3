package log

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// Retention (Config.Retention) erases, in a commitment log, the events
// whose commitment leaves were received longer ago than the retention
// period. A round reads the log from the payload store's mark
// retention_from up to the first commitment leaf that is not old enough
// (at most retentionBatch entries), appends one erasure leaf of source
// RetentionSource covering that range, applies it (erase.go) and raises
// the mark. Entries in the range that are not commitment leaves (raw
// entries, erasure leaves) or were erased already are covered too: erasing
// them changes nothing. Rounds take the erasure lock, so that frontends
// sharing a MySQL database run one at a time and never erase a range
// twice. Once a round has reached the young entries, it also deletes the
// payload rows older than the cutoff by orphanMargin: no leaf names them
// (a crash, or a failed append, between the row and its leaf).

// retentionBatch is the most entries one round (one erasure leaf) covers.
const retentionBatch = 1 << 16

// retentionEvery is how often a log with retention looks for entries to
// erase: a tenth of the period, between a second and a minute.
func retentionEvery(period time.Duration) time.Duration {
	return min(max(period/10, time.Second), time.Minute)
}

// retentionLoop runs retention rounds until the server stops.
func (s *Server) retentionLoop(done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(retentionEvery(s.cfg.Retention))
	defer t.Stop()
	failing := false
	for {
		more, err := s.retentionRound(s.ctx, time.Now())
		switch {
		case err != nil && s.ctx.Err() == nil && !failing:
			s.log.Warn("retention: couldn't erase the entries past the retention period; retrying", "err", err, "retention", s.cfg.Retention)
		case err == nil && failing:
			s.log.Info("retention: erasing again")
		}
		failing = err != nil
		if more && err == nil {
			continue
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retentionRound erases, as of now, one batch of the entries past the
// retention period. more says that there may be more to erase at once.
func (s *Server) retentionRound(ctx context.Context, now time.Time) (more bool, err error) {
	unlock, err := s.payloads.lock(ctx, time.Second)
	if errors.Is(err, errLockBusy) {
		return false, nil // another frontend's round
	}
	if err != nil {
		return false, fmt.Errorf("couldn't take the erasure lock: %w", err)
	}
	defer unlock()
	from, err := s.payloads.mark(ctx, markRetentionFrom)
	if err != nil {
		return false, fmt.Errorf("couldn't read the retention mark: %w", err)
	}
	size, err := s.integratedSize()
	if err != nil {
		return false, fmt.Errorf("couldn't read the tree size: %w", err)
	}
	cutoff := now.Add(-s.cfg.Retention)
	end := min(size, from+retentionBatch)
	stop, commitments := from, 0
	errYoung := errors.New("young")
	err = s.scanEntries(ctx, from, end, size, func(idx uint64, entry []byte) error {
		if looksCommitment(entry) {
			c, err := checkpoint.ParseCommitmentLeaf(entry)
			if err == nil && !c.Received.Before(cutoff) {
				return errYoung
			}
			commitments++
		}
		stop = idx + 1
		return nil
	})
	if err != nil && !errors.Is(err, errYoung) {
		return false, err
	}
	if stop == from {
		return false, s.deleteOrphans(ctx, cutoff, stop, size)
	}
	if commitments > 0 {
		e := checkpoint.Erasure{
			Received: s.stamps.next(1)[0],
			Source:   RetentionSource,
			Entries:  []checkpoint.IndexRange{{From: from, To: stop}},
			Reason:   "retention: older than " + s.cfg.Retention.String(),
		}
		eidx, err := s.appendErasure(ctx, e, "retention")
		if err != nil {
			return false, err
		}
		// Logged: the range is done for retention, whatever the deletes
		// do (the repair applies a logged erasure that failed).
		if err := s.payloads.setMark(ctx, markRetentionFrom, stop); err != nil {
			return false, fmt.Errorf("couldn't record the retention mark: %w", err)
		}
		if err := s.applyErasure(ctx, eidx, e, "retention"); err != nil {
			return false, fmt.Errorf("the retention erasure at %d is logged but its deletes failed (applied again within a minute): %w", eidx, err)
		}
		s.log.Info("retention: entries erased", "from", from, "to", stop, "erasure_index", eidx, "retention", s.cfg.Retention)
	}
	if err := s.payloads.setMark(ctx, markRetentionFrom, stop); err != nil {
		return false, fmt.Errorf("couldn't record the retention mark: %w", err)
	}
	if stop == from+retentionBatch {
		return true, nil
	}
	return false, s.deleteOrphans(ctx, cutoff, stop, size)
}

// deleteOrphans deletes the payload rows received before cutoff by more
// than orphanMargin that no leaf names (it was never appended). Every
// leaf below from, retention's mark, is covered by a logged erasure; the
// leaves in [from, size) are read, since index order is not the order of
// "received" (a clock corrected backwards, a frontend's clock behind the
// others'): a leaf past a young one can be older than the cutoff, and its
// row is kept for the round that erases it with a logged erasure. The
// caller holds the erasure lock.
func (s *Server) deleteOrphans(ctx context.Context, cutoff time.Time, from, size uint64) error {
	before := cutoff.Add(-orphanMargin)
	candidates, err := s.payloads.keysBefore(ctx, before, orphanBatch)
	if err != nil {
		return fmt.Errorf("couldn't read orphan payloads: %w", err)
	}
	if len(candidates) == 0 {
		return nil
	}
	orphans := make(map[payloadKey]bool, len(candidates))
	for _, k := range candidates {
		orphans[k] = true
	}
	err = s.scanEntries(ctx, from, size, size, func(idx uint64, entry []byte) error {
		if !looksCommitment(entry) {
			return nil
		}
		if c, err := checkpoint.ParseCommitmentLeaf(entry); err == nil && c.Received.Before(before) {
			delete(orphans, payloadKeyOf(c))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("couldn't read the log for leaves naming old payload rows: %w", err)
	}
	keys := make([]payloadKey, 0, len(orphans))
	for k := range orphans {
		keys = append(keys, k)
	}
	n, err := s.payloads.delete(ctx, keys)
	if err != nil {
		return fmt.Errorf("couldn't delete orphan payloads: %w", err)
	}
	if n == 0 {
		return nil
	}
	s.erasureMetrics.erased.WithLabelValues("orphan").Add(float64(n))
	s.log.Info("retention: payload rows whose leaves were never appended deleted", "rows", n)
	return s.payloads.flush(ctx)
}

// orphanMargin is how much older than the retention cutoff a payload row
// must be for retention to take it for an orphan: far more than a leaf
// can take from its "received" stamp to its append, or than frontends'
// clocks differ.
const orphanMargin = time.Hour

// orphanBatch bounds the orphan rows one round deletes.
const orphanBatch = 4096
