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

	"github.com/tidemark/tidemark/checkpoint"
)

// A witnessed checkpoint is a published checkpoint that the policy accepts:
// signed by the log and cosigned by a quorum of its witnesses.
type witnessed struct {
	signed     []byte
	c          checkpoint.Checkpoint
	cosigners  map[string]time.Time
	observedAt time.Time

	pbMu sync.Mutex  // guards pn
	pn   *proofNodes // made on the first receipt against this checkpoint
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
//
// It reads the checkpoint every period, and besides at once when told that
// a witness round has ended (the witness observer's roundEnded): Tessera
// writes the checkpoint it witnessed just after the round, so the awaiter
// reads it again at growing delays (followDelays) until it changes. A
// waiting request so hears of a witnessed checkpoint about when it is
// written, not up to a period later.
type awaiter struct {
	read   func(context.Context) ([]byte, error)
	policy *checkpoint.Policy
	period time.Duration
	log    *slog.Logger
	// roundEnded, when not nil, receives when a witness round has ended.
	roundEnded <-chan struct{}
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

// followDelays are the waits between reads of the published checkpoint
// after a witness round ends, until it changes: Tessera writes it a file
// write (POSIX: with fsyncs) or a transaction (MySQL) after the round.
// They add up to more than awaitPeriod, after which the periodic reads
// would find it anyway.
var followDelays = []time.Duration{0, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond, 16 * time.Millisecond, 32 * time.Millisecond}

// run polls until ctx is done.
func (a *awaiter) run(ctx context.Context) {
	t := time.NewTicker(a.period)
	defer t.Stop()
	failing := false
	poll := func() (changed bool) {
		changed, err := a.poll(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			a.log.Warn("couldn't read the published checkpoint; retrying", "err", err)
			failing = true
		case err == nil && failing:
			a.log.Info("reading the published checkpoint again")
			failing = false
		}
		return changed
	}
	poll()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			poll()
		case <-a.roundEnded:
			follow(ctx, poll)
		}
	}
}

// follow polls at followDelays until poll reports a change or ctx ends.
func follow(ctx context.Context, poll func() bool) {
	for _, d := range followDelays {
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if poll() {
			return
		}
	}
}

// poll reads the published checkpoint and, if it is new, witnessed and
// larger than the latest, makes it the latest. It reports whether the
// published checkpoint was another than at the last read.
func (a *awaiter) poll(ctx context.Context) (changed bool, err error) {
	signed, err := a.read(ctx)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	seen := bytes.Equal(signed, a.lastSeen)
	a.mu.Unlock()
	if seen {
		return false, nil
	}
	c, cosigners, err := a.policy.Verify(signed)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastSeen = signed
	if err != nil {
		// Fail-open published it without the quorum, or the policy and the
		// log disagree: the witnessing observer has said why.
		a.log.Debug("the published checkpoint does not meet the policy; receipts wait for one that does", "err", err)
		return true, nil
	}
	if a.latest != nil && c.Size < a.latest.c.Size {
		return true, nil
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
	return true, nil
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
