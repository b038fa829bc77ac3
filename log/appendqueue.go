package log

import (
	"context"
	"errors"
	"time"

	"github.com/transparency-dev/tessera"
)

// appendQueue hands entries to Tessera's Add in groups, with one group in
// flight at a time: while Tessera sequences and integrates a group, the
// requests that arrive gather into the next one. It assigns no index itself:
// Tessera does, and the queue hands each request its entries' indexes. The group size so follows the load,
// without a timer to tune: under light load an entry waits for nothing but
// the group ahead of it, and under heavy load each group carries everything
// that arrived during the last integration, so the per-batch costs (fsyncs,
// tile rewrites) are shared by more entries. Tessera's own queue, left to
// itself, flushes a batch whenever its timer fires, and under load piles up
// many small batches behind the one being integrated.
type appendQueue struct {
	add tessera.AddFn
	// check, if not nil, runs before each group goes to Tessera; a group
	// it fails is answered with its error and never reaches Tessera.
	check func() error
	// size, if not nil, reads the integrated tree size: a group whose
	// failed entries leave the tree larger than its successes explain
	// fails them with a maybeLoggedError.
	size func() (uint64, error)
	// integrated, if not nil, is told the tree size after each group with
	// entries logged, and when they were.
	integrated func(size uint64, at time.Time)
	jobs       chan *appendJob
	// stopped is closed when run has returned: a job it has not taken by
	// then never will be, and fails with errLogStopping.
	stopped chan struct{}
	linger  time.Duration // how long a group waits for more after its first request
	max     int           // entries beyond which a group goes at once
}

// An appendJob is one request's entries.
type appendJob struct {
	entries []*tessera.Entry
	indexes []tessera.Index
	errs    []error
	done    chan struct{}
}

func newAppendQueue(add tessera.AddFn, check func() error, linger time.Duration, max int) *appendQueue {
	return &appendQueue{add: add, check: check, jobs: make(chan *appendJob, 4096), stopped: make(chan struct{}), linger: linger, max: max}
}

// errLogStopping fails the entries of requests still queued when the log
// stops: none of them was handed to Tessera.
var errLogStopping = errors.New("the log is shutting down: nothing of this request was logged")

// append queues entries and waits until each is sequenced (or failed). The
// returned slices are indexed like entries.
func (q *appendQueue) append(ctx context.Context, entries []*tessera.Entry) ([]tessera.Index, []error) {
	j := &appendJob{entries: entries, indexes: make([]tessera.Index, len(entries)), errs: make([]error, len(entries)), done: make(chan struct{})}
	fail := func() ([]tessera.Index, []error) {
		for i := range j.errs {
			j.errs[i] = errLogStopping
		}
		return j.indexes, j.errs
	}
	select {
	case q.jobs <- j:
	case <-q.stopped:
		return fail()
	}
	select {
	case <-j.done:
	case <-q.stopped:
		// run has returned: it closed done before, or never will.
		select {
		case <-j.done:
		default:
			return fail()
		}
	}
	return j.indexes, j.errs
}

func (q *appendQueue) run(ctx context.Context) {
	defer close(q.stopped)
	var group []*appendJob
	for {
		group = group[:0]
		n := 0
		select {
		case j := <-q.jobs:
			group = append(group, j)
			n += len(j.entries)
		case <-ctx.Done():
			return
		}
		var timeout <-chan time.Time
		var timer *time.Timer
		if q.linger > 0 {
			timer = time.NewTimer(q.linger)
			timeout = timer.C
		}
	gather:
		for n < q.max {
			select {
			case j := <-q.jobs:
				group = append(group, j)
				n += len(j.entries)
			default:
				if timeout == nil {
					break gather
				}
				select {
				case j := <-q.jobs:
					group = append(group, j)
					n += len(j.entries)
				case <-timeout:
					break gather
				}
			}
		}
		if timer != nil {
			timer.Stop()
		}
		// Tessera v1.0.4 panics when it cannot open its lock file for
		// writing, as on a file system that turned read-only: refuse the
		// group instead (checkWritable). A window remains, from this check
		// to Tessera's opening of the lock file when it sequences the
		// group: Tessera's batch age (1 ms by default; its queue waits that
		// long after the first entry), plus, for a group Tessera splits into
		// several batches, the time to integrate all but the last. A file
		// system that turns read-only inside it still stops the process.
		// Tessera is idle between groups, so the window is open only while
		// groups flow: under steady load it is a batch age out of every
		// group's few milliseconds (in TestLogOnReadOnlyDisk's load, about
		// one trigger in five landed in it). A file system that turns
		// read-only because one of this log's own writes failed does so
		// inside a batch, after the lock was taken, and is caught here
		// before the next group, though not before the next batch of the
		// same group. Every entry already answered is durable either way.
		if q.check != nil {
			if err := q.check(); err != nil {
				for _, j := range group {
					for i := range j.errs {
						j.errs[i] = err
					}
					close(j.done)
				}
				continue
			}
		}
		var before uint64
		sizeErr := errors.New("no size")
		if q.size != nil {
			before, sizeErr = q.size()
		}
		futures := make([][]tessera.IndexFuture, len(group))
		for gi, j := range group {
			futures[gi] = make([]tessera.IndexFuture, len(j.entries))
			for i, e := range j.entries {
				futures[gi][i] = q.add(ctx, e)
			}
		}
		var logged, failed, end uint64
		for gi, j := range group {
			for i, f := range futures[gi] {
				j.indexes[i], j.errs[i] = f()
				if j.errs[i] == nil {
					logged++
					end = max(end, j.indexes[i].Index+1)
				} else {
					failed++
				}
			}
		}
		if logged > 0 && q.integrated != nil {
			q.integrated(end, time.Now())
		}
		if failed > 0 && sizeErr == nil {
			// Tessera fails every entry of a batch whose tree state was
			// renamed into place but not synced: those entries are in the
			// tree. Only this goroutine appends, so the tree grew by the
			// entries of this group that it holds.
			if after, err := q.size(); err == nil && after > before+logged {
				for _, j := range group {
					for i, err := range j.errs {
						if err != nil {
							j.errs[i] = &maybeLoggedError{err}
						}
					}
				}
			}
		}
		for _, j := range group {
			close(j.done)
		}
	}
}

// A maybeLoggedError fails an entry that may be in the tree all the same:
// its group failed, yet the tree grew by more than the group's successes.
type maybeLoggedError struct{ err error }

func (e *maybeLoggedError) Error() string {
	return e.err.Error() + " (after the failure the tree held entries of the failed batch)"
}

func (e *maybeLoggedError) Unwrap() error { return e.err }
