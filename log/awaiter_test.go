package log

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/tidemark/tidemark/checkpoint"
	"golang.org/x/mod/sumdb/note"
)

// publishedCheckpoint stands in for the log's published checkpoint: what
// the awaiter reads.
type publishedCheckpoint struct {
	t      *testing.T
	signer note.Signer
	policy *checkpoint.Policy

	mu     sync.Mutex
	signed []byte
	reads  int
	// next, when set, becomes signed at read number nextAt: a checkpoint
	// being written while the awaiter reads.
	next   []byte
	nextAt int
}

func newPublishedCheckpoint(t *testing.T) *publishedCheckpoint {
	t.Helper()
	skey, vkey, err := checkpoint.GenerateLogKey("test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := checkpoint.NewLogSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := checkpoint.ParsePolicy([]byte("log " + vkey + "\nquorum none\n"))
	if err != nil {
		t.Fatal(err)
	}
	return &publishedCheckpoint{t: t, signer: signer, policy: p}
}

func (pc *publishedCheckpoint) sign(size uint64) []byte {
	pc.t.Helper()
	h := make([]byte, 32)
	h[0] = byte(size)
	signed, err := note.Sign(&note.Note{Text: string(checkpoint.Format(checkpoint.Checkpoint{Origin: "test.example/log", Size: size, Hash: h}))}, pc.signer)
	if err != nil {
		pc.t.Fatal(err)
	}
	return signed
}

// publish makes a signed checkpoint of size the published one.
func (pc *publishedCheckpoint) publish(size uint64) {
	pc.t.Helper()
	signed := pc.sign(size)
	pc.mu.Lock()
	pc.signed = signed
	pc.mu.Unlock()
}

// publishAfterReads makes a checkpoint of size the published one once it
// has been read n more times.
func (pc *publishedCheckpoint) publishAfterReads(size uint64, n int) {
	pc.t.Helper()
	signed := pc.sign(size)
	pc.mu.Lock()
	pc.next, pc.nextAt = signed, pc.reads+n+1
	pc.mu.Unlock()
}

func (pc *publishedCheckpoint) read(context.Context) ([]byte, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.reads++
	if pc.next != nil && pc.reads >= pc.nextAt {
		pc.signed, pc.next = pc.next, nil
	}
	return pc.signed, nil
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// The witnessed delay is observed once per group of entries, when the
// first witnessed checkpoint covering it is seen, and not before.
func TestAwaiterWitnessedDelay(t *testing.T) {
	pc := newPublishedCheckpoint(t)
	a := newAwaiter(pc.read, pc.policy, time.Hour, slog.New(slog.DiscardHandler))
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"})
	a.delay = h
	ctx := context.Background()

	pc.publish(2)
	if _, err := a.poll(ctx); err != nil {
		t.Fatal(err)
	}
	a.integrated(1, time.Now()) // already covered
	if n := histogramCount(t, h); n != 1 {
		t.Fatalf("%d observations after a group the witnessed checkpoint already covers, want 1", n)
	}
	a.integrated(3, time.Now())
	a.integrated(5, time.Now())
	a.integrated(6, time.Now())
	pc.publish(5)
	if _, err := a.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := histogramCount(t, h); n != 3 {
		t.Fatalf("%d observations once size 5 is witnessed, want 3 (the groups ending at 1, 3 and 5)", n)
	}
	pc.publish(9)
	if _, err := a.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := histogramCount(t, h); n != 4 {
		t.Fatalf("%d observations once size 9 is witnessed, want 4", n)
	}
	if len(a.pending) != 0 {
		t.Fatalf("%d groups still pending", len(a.pending))
	}
}

// Beyond maxPending, groups are merged into the last one: each is still
// observed once it is covered, none is kept forever.
func TestAwaiterPendingBounded(t *testing.T) {
	pc := newPublishedCheckpoint(t)
	a := newAwaiter(pc.read, pc.policy, time.Hour, slog.New(slog.DiscardHandler))
	a.delay = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"})
	for i := range uint64(maxPending + 100) {
		a.integrated(i+1, time.Now())
	}
	if len(a.pending) != maxPending {
		t.Fatalf("%d groups pending, want at most %d", len(a.pending), maxPending)
	}
	pc.publish(maxPending + 100)
	if _, err := a.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(a.pending) != 0 {
		t.Fatalf("%d groups still pending after a checkpoint covering them all", len(a.pending))
	}
}

// A waiting request hears of a witnessed checkpoint when the witness round
// that made it ends, not at the awaiter's next periodic read: here the
// period is an hour, so only the round's end can wake it.
func TestAwaiterWakesWhenARoundEnds(t *testing.T) {
	pc := newPublishedCheckpoint(t)
	pc.publish(1)
	a := newAwaiter(pc.read, pc.policy, time.Hour, slog.New(slog.DiscardHandler))
	ended := make(chan struct{}, 1)
	a.roundEnded = ended
	ctx := t.Context()
	go a.run(ctx)
	if w, err := a.wait(ctx, 0); err != nil || w.c.Size != 1 {
		t.Fatalf("first checkpoint: %v %v", w, err)
	}
	pc.publish(5)
	ended <- struct{}{}
	w, err := a.wait(ctx, 4)
	if err != nil || w.c.Size != 5 {
		t.Fatalf("after the round ended: %v %v", w, err)
	}
}

// Tessera writes the checkpoint after the round: the awaiter reads again
// until it changes.
func TestAwaiterFollowsTheRoundUntilTheCheckpointIsWritten(t *testing.T) {
	pc := newPublishedCheckpoint(t)
	pc.publish(1)
	a := newAwaiter(pc.read, pc.policy, time.Hour, slog.New(slog.DiscardHandler))
	ended := make(chan struct{}, 1)
	a.roundEnded = ended
	ctx := t.Context()
	go a.run(ctx)
	if _, err := a.wait(ctx, 0); err != nil {
		t.Fatal(err)
	}
	pc.publishAfterReads(7, len(followDelays)-1)
	ended <- struct{}{}
	w, err := a.wait(ctx, 6)
	if err != nil || w.c.Size != 7 {
		t.Fatalf("after the round ended: %v %v", w, err)
	}
}
