package log

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera/client"

	"github.com/tidemark/tidemark/checkpoint"
)

// A witnessed checkpoint is a published checkpoint that the policy accepts:
// signed by the log and cosigned by a quorum of its witnesses.
type witnessed struct {
	signed     []byte
	c          checkpoint.Checkpoint
	cosigners  map[string]time.Time
	observedAt time.Time

	pbMu sync.Mutex           // guards pb
	pb   *client.ProofBuilder // built on the first receipt against this checkpoint
}

// An awaiter follows the published checkpoint and keeps the latest one that
// the policy accepts, for receipts and for requests waiting for one
// (?wait=witnessed).
//
// It does not trust that a published checkpoint is witnessed: with
// fail-open, Tessera publishes checkpoints that missed the quorum, so each
// new one is checked with Policy.Verify. A failed read is retried at the
// next poll and releases no waiter (Tessera's PublicationAwaiter releases
// every waiter with the error).
type awaiter struct {
	read   func(context.Context) ([]byte, error)
	policy *checkpoint.Policy
	period time.Duration
	log    *slog.Logger
	// delay, when set, observes for each group of entries this frontend
	// appended the time from their integration to the first witnessed
	// checkpoint that covers them.
	delay prometheus.Observer

	mu       sync.Mutex    // guards the fields below
	latest   *witnessed    // nil until a witnessed checkpoint is seen
	changed  chan struct{} // closed, and replaced, when latest changes
	lastSeen []byte        // the last published checkpoint checked
	pending  []integration // groups appended and not yet covered, oldest first
}

// An integration is a group of entries that became part of the tree:
// the tree size once it was, and when.
type integration struct {
	size uint64
	at   time.Time
}

// maxPending bounds the integrations waiting for a witnessed checkpoint
// (while the quorum is down, say): beyond it, newer ones are merged into the
// last, which keeps its time, so their delay is over-stated, never lost.
const maxPending = 4096

func newAwaiter(read func(context.Context) ([]byte, error), p *checkpoint.Policy, period time.Duration, logger *slog.Logger) *awaiter {
	return &awaiter{read: read, policy: p, period: period, log: logger, changed: make(chan struct{})}
}

// integrated records that the tree holds size entries since at.
func (a *awaiter) integrated(size uint64, at time.Time) {
	if a.delay == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.latest != nil && size <= a.latest.c.Size {
		a.delay.Observe(0)
		return
	}
	if n := len(a.pending); n > 0 && (n >= maxPending || size <= a.pending[n-1].size) {
		a.pending[n-1].size = max(a.pending[n-1].size, size)
		return
	}
	a.pending = append(a.pending, integration{size: size, at: at})
}

// run polls until ctx is done.
func (a *awaiter) run(ctx context.Context) {
	t := time.NewTicker(a.period)
	defer t.Stop()
	failing := false
	for {
		err := a.poll(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			a.log.Warn("couldn't read the published checkpoint; retrying", "err", err)
			failing = true
		case err == nil && failing:
			a.log.Info("reading the published checkpoint again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll reads the published checkpoint and, if it is new, witnessed and
// larger than the latest, makes it the latest.
func (a *awaiter) poll(ctx context.Context) error {
	signed, err := a.read(ctx)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	seen := bytes.Equal(signed, a.lastSeen)
	a.mu.Unlock()
	if seen {
		return nil
	}
	c, cosigners, err := a.policy.Verify(signed)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastSeen = signed
	if err != nil {
		// Fail-open published it without the quorum, or the policy and the
		// log disagree: the witnessing observer has said why.
		a.log.Debug("the published checkpoint does not meet the policy; receipts wait for one that does", "err", err)
		return nil
	}
	if a.latest != nil && c.Size < a.latest.c.Size {
		return nil
	}
	a.latest = &witnessed{signed: signed, c: c, cosigners: cosigners, observedAt: time.Now()}
	covered := 0
	for _, p := range a.pending {
		if p.size > c.Size {
			break
		}
		a.delay.Observe(a.latest.observedAt.Sub(p.at).Seconds())
		covered++
	}
	a.pending = append(a.pending[:0], a.pending[covered:]...)
	close(a.changed)
	a.changed = make(chan struct{})
	return nil
}

// current returns the latest witnessed checkpoint (nil if none yet) and a
// channel closed when it changes.
func (a *awaiter) current() (*witnessed, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.latest, a.changed
}

// wait returns the first witnessed checkpoint that covers index, or ctx's
// error.
func (a *awaiter) wait(ctx context.Context, index uint64) (*witnessed, error) {
	for {
		w, changed := a.current()
		if w != nil && w.c.Size > index {
			return w, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
