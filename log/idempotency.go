package log

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// idempotencyIndex is the idempotency index: it maps (source, key) to the
// log index of the first entry written with that key, so that a sender's
// retry gets the first answer back instead of a second entry, whichever
// frontend it reaches.
//
// A key is the Idempotency-Key header ("k:" prefix; in a batch the header
// key with "/<line>" appended; the k8s and OTLP keys travel the same way)
// or, when there is none, the event's "id" member ("i:" prefix, then "s:"
// for a string id and "n:" for a number, so that {"id":1} and {"id":"1"}
// differ). It is held as keyHash(source, key).
//
// A key answers a retry only when the event is the same: the index keeps,
// with each key, eventHash of the canonical event the key was first logged
// with. A different event under a used key is not a retry. When the sender
// chose the key (an Idempotency-Key header) that is its mistake, and the
// request is refused (422). Every other key (an "id" member, a k8s auditID,
// an OTLP log.record.uid) may be chosen by someone other than the sender —
// the kube-apiserver takes auditID from the client's Audit-ID header — so
// the event is logged as a new entry under a variant of the key (keyID:
// the key and the event), which answers that event's own retries. An audit event is never dropped
// because somebody reused its ID.
//
// The index lives in a database (idempotencydb.go): SQLite beside a POSIX log,
// the log's own MySQL database otherwise, where every frontend of the log
// shares it. Memory holds only the claims of requests in flight and the
// rows on their way to the database, so it does not grow with the log.
//
// On MySQL, a request claims its keys before it appends: one transaction
// inserts a claim row per new key, committed durably, so two requests with
// one key, on one frontend or on two, cannot both append; the loser waits
// for the winner's index. Once appended, the claim is completed with the
// index. The leaf carries its key (the header key inside it, the id inside
// the event), so a frontend that dies between appending and completing
// leaves claims that recovery (recovery.go) resolves from the leaves above
// the claim's tree size.
//
// A POSIX log is one process, so its claims need not leave memory
// (volatile): requests with one key meet in the pending map, and a row is
// written once, complete, after the append, without waiting for a sync.
// What a crash can lose is covered by a watermark instead: below it every
// keyed entry has its row, and a start scans the leaves above it (Build).
// The watermark moves only past entries whose requests have all handed
// their rows to the writer (epochs), and is committed behind those rows, so
// a crash at any moment is covered. That halves the index's writes per key
// against durable claims (a claim, then its completion).
type idempotencyIndex struct {
	store keyDB
	// ownsDB: Close closes the database (SQLite; MySQL's is the log's).
	ownsDB bool
	log    *slog.Logger
	// owner names this process in the claims it makes, host for people.
	owner int64
	host  string
	// size reads the integrated tree size: a claim records it, and the
	// claimed entry, if it is ever appended, lies at or above it.
	size func() (uint64, error)
	// lease is how long a frontend may be silent before the others take
	// it for dead (frontendLease).
	lease time.Duration

	ops        chan storeOp // to the writer goroutine
	writerDone chan struct{}
	closeOnce  sync.Once

	mu sync.Mutex // guards pending and completing
	// pending: this process's claims, from begin until finish.
	pending map[keyID]*claim
	// completing: keys appended by this process whose completion is not
	// committed yet; the index answers their retries from here meanwhile.
	completing map[keyID]indexEntry

	// volatile: claims are held in memory only, and a watermark stands for
	// them (a POSIX log, one process; see the comment on idempotencyIndex).
	volatile bool
	epochs   epochs
	// frozen: the watermark stays where it is (a test's crash, or rows
	// that could not be written); the next start scans past it.
	frozen atomic.Bool

	// lostRows (volatile): rows of appended entries were dropped after the
	// store kept failing (maxRetryRows); their keys have no row until the
	// next start scans past the watermark, so keyed writes are refused
	// until then.
	lostRows atomic.Bool
	// unflushed: the writer stopped with completions it could not write;
	// Close then leaves this frontend's claims to recovery.
	unflushed atomic.Bool
	// lastBeat (MySQL) is when this frontend's heartbeat last reached the
	// database (unix nanoseconds): a frontend whose heartbeats stall takes
	// no keyed write, so that the others cannot take it for dead while it
	// appends (fencing by lease).
	lastBeat atomic.Int64

	// halted stands in for a process that died (tests): nothing more is
	// written to the store.
	halted atomic.Bool
	// lossy stands in for a process that dies after each append (tests):
	// claims are written, their completions and releases are not.
	lossy atomic.Bool
	// takeovers counts claims of this process that recovery completed in
	// its place, having taken it for dead (see complete).
	takeovers atomic.Int64
}

// An indexEntry is what the index holds for a key: the log index of the
// first entry written with it, and the eventHash of that entry's event.
type indexEntry struct {
	idx uint64
	ev  [16]byte
}

// A claim is an in-flight request's hold on a key: later requests with the
// same key and the same event wait for it rather than appending again.
type claim struct {
	ev   [16]byte // the event being appended under the key
	done chan struct{}
	idx  uint64
	err  error
}

// sqlitePragmas open the SQLite index: WAL with synchronous=NORMAL (WAL
// keeps commits in order, so a durable watermark implies durable rows
// below it, and rows a power cut loses are scanned again from the log), a
// 64 MiB page cache (the bound of its memory).
//
// journal_size_limit: a flush of many rows writes a WAL as large as the pages
// it dirtied (about 0.5 GB at 10 M keys); after a checkpoint SQLite cuts the
// file back to 64 MiB instead of keeping it at its largest.
const sqlitePragmas = "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=cache_size(-65536)&_pragma=journal_size_limit(67108864)"

// openSQLiteIndex opens (or creates) the index in the SQLite file at path,
// beside a POSIX log. Opening writes (the -wal and -shm files), so it fails
// on a full or read-only disk; sqliteMayBeDisk tells such a failure from a
// damaged file.
func openSQLiteIndex(path string, logger *slog.Logger, size func() (uint64, error)) (*idempotencyIndex, bool, error) {
	db, err := sql.Open("sqlite", "file:"+path+sqlitePragmas)
	if err != nil {
		return nil, false, fmt.Errorf("couldn't open the idempotency index: %w", err)
	}
	// One connection: SQLite has one writer, and the writer goroutine and
	// the lookups of waiting requests take turns on it.
	db.SetMaxOpenConns(1)
	d, fresh, err := newIdempotencyIndex(&sqlKeys{db: db, d: sqliteDialect}, logger, size, true)
	if err != nil {
		db.Close()
		return nil, false, fmt.Errorf("couldn't open the idempotency index %s: %w%s", path, err, sqliteAdvice(err))
	}
	d.ownsDB = true
	return d, fresh, nil
}

// openMySQLIndex opens the index in the log's MySQL database.
func openMySQLIndex(db *sql.DB, logger *slog.Logger, size func() (uint64, error)) (*idempotencyIndex, bool, error) {
	d, fresh, err := newIdempotencyIndex(&sqlKeys{db: db, d: mysqlDialect}, logger, size, false)
	if err != nil {
		return nil, false, fmt.Errorf("couldn't open the idempotency index in MySQL: %w", err)
	}
	return d, fresh, nil
}

// newIdempotencyIndex creates the store's tables and starts the writer. fresh says
// that the index was just created and must be built from the log (Build)
// before it answers. volatile: claims stay in memory (a POSIX log; see
// idempotencyIndex), known before the writer starts.
func newIdempotencyIndex(k keyDB, logger *slog.Logger, size func() (uint64, error), volatile bool) (*idempotencyIndex, bool, error) {
	fresh, err := k.migrate(context.Background())
	if err != nil {
		return nil, false, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	dd := &idempotencyIndex{store: k, log: logger, owner: int64(binary.BigEndian.Uint64(b[:]) >> 1), host: host, size: size,
		lease: frontendLease, ops: make(chan storeOp, 1024), writerDone: make(chan struct{}),
		pending: map[keyID]*claim{}, completing: map[keyID]indexEntry{}, volatile: volatile}
	if err := k.heartbeat(context.Background(), dd.owner, host); err != nil {
		return nil, false, err
	}
	dd.lastBeat.Store(time.Now().UnixNano())
	dd.epochs.init()
	go dd.writer()
	return dd, fresh, nil
}

// Close stops the writer once it has committed what it was given, and
// closes the database.
func (d *idempotencyIndex) Close() error {
	d.closeOnce.Do(func() {
		close(d.ops)
		<-d.writerDone
		// A clean stop leaves no claims, so no frontend waits for this one
		// to be declared dead.
		if !d.halted.Load() && !d.unflushed.Load() {
			_ = inTx(context.Background(), d.store, func(tx keyTx) error { return tx.forget(context.Background(), []int64{d.owner}) })
		}
	})
	if !d.ownsDB {
		return nil
	}
	return d.store.close()
}

// Len returns the number of complete keys in the index.
func (d *idempotencyIndex) Len() int {
	n, err := d.store.count(context.Background())
	if err != nil {
		return -1
	}
	return int(n)
}

// halt makes the index behave as if its process died: nothing more is
// written (tests).
func (d *idempotencyIndex) halt() { d.halted.Store(true) }

// crash stops the index as a dying process would (tests): nothing more is
// written, and the store is closed as it is, claims open.
func (d *idempotencyIndex) crash() {
	d.halt()
	_ = d.Close()
}

// A keyedEvent is one event of a request as the index sees it.
type keyedEvent struct {
	key string // "" for an event without a key
	// explicit: the sender chose the key (an Idempotency-Key header), so a
	// different event under it is refused rather than logged.
	explicit bool
	ev       [16]byte // eventHash of the canonical event
}

// A keyState says what a request must do about one keyed event.
type keyState struct {
	// owned: this request holds the claim and must append, then finish.
	owned bool
	// found: the key already has an index (idx), for this same event.
	found bool
	idx   uint64
	// wait: another request holds the claim for this same event; wait on it.
	wait *claim
	// sameAs: the same key and event appeared earlier in this request, at
	// this position.
	sameAs int
	// reused: the key was used before for another event; this one is
	// logged as a new entry under a variant of the key.
	reused bool
}

// A batch is one request's keyed events, from begin to finish.
type batch struct {
	d     *idempotencyIndex
	epoch uint64 // volatile: the epoch the request began in
	// epochBegun: epoch must be ended (finish, or dropClaims when the
	// transaction that decided the batch did not commit).
	epochBegun bool
	ids        []keyID // per event, the row it is indexed under
	states     []keyState
	claims     map[keyID]*claim // owned claims
}

// A keyConflict refuses a request: event pos carries an explicit key that
// was used for another event (logged at idx, or in flight when pending).
type keyConflict struct {
	pos     int
	idx     uint64
	pending bool
}

func (e *keyConflict) Error() string {
	return fmt.Sprintf("event %d: the idempotency key was used for a different event", e.pos)
}

// errIndexUnavailable wraps a failure of the index's database: the request
// is refused with a 503 and nothing is appended.
var errIndexUnavailable = errors.New("the idempotency index is unavailable")

// begin claims the keys of one request's events and says for each what to
// do. It refuses the whole request, changing nothing, when an explicit key
// was used for a different event. Otherwise finish must be called once the
// request is done, whatever happened.
func (d *idempotencyIndex) begin(ctx context.Context, source string, evs []keyedEvent) (*batch, error) {
	if d.lostRows.Load() {
		return nil, fmt.Errorf("%w: it could not write the rows of appended entries for too long; restart the log, which finds them in its leaves", errIndexUnavailable)
	}
	if !d.volatile && time.Since(time.Unix(0, d.lastBeat.Load())) > max(d.lease/2, 3*heartbeatEvery) {
		return nil, fmt.Errorf("%w: this frontend's heartbeat has not reached the database for %s, and the others take it for dead after %s", errIndexUnavailable, time.Since(time.Unix(0, d.lastBeat.Load())).Round(time.Second), d.lease)
	}
	op := &claimOp{source: source, evs: evs, done: make(chan struct{})}
	select {
	case d.ops <- storeOp{claim: op}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	<-op.done // the writer always answers
	if op.err != nil {
		return nil, op.err
	}
	b := op.batch
	if len(op.remote) > 0 {
		go d.awaitRemote(op.remote)
	}
	return b, nil
}

// reusedCount returns how many events are logged as new entries under a
// key used before for another event.
func (b *batch) reusedCount() int {
	n := 0
	for _, st := range b.states {
		if st.reused && st.owned {
			n++
		}
	}
	return n
}

// firstReusedKey names, for the log, the first key counted by reusedCount.
func (b *batch) firstReusedKey(evs []keyedEvent) string {
	for i, st := range b.states {
		if st.reused && st.owned {
			return evs[i].key
		}
	}
	return ""
}

// appends reports whether the request must append event i itself: the
// index has no answer for it (no key, or a key this request now owns). A
// nil batch (no event had a key) answers none.
func (b *batch) appends(i int) bool {
	if b == nil {
		return true
	}
	st := b.states[i]
	return !st.found && st.wait == nil && st.sameAs < 0
}

// answer returns the index that answers event i, which the request does
// not append (appends is false): the index the key already had, or the
// index another request in flight appends the same event at (answer waits
// for it), or, when sameAs >= 0, whatever answers the earlier event sameAs
// of this same request.
func (b *batch) answer(ctx context.Context, i int) (idx uint64, sameAs int, err error) {
	st := b.states[i]
	switch {
	case st.sameAs >= 0:
		return 0, st.sameAs, nil
	case st.found:
		return st.idx, -1, nil
	case st.wait != nil:
		select {
		case <-st.wait.done:
		case <-ctx.Done():
			return 0, -1, ctx.Err()
		}
		if st.wait.err != nil {
			e := errorf(http.StatusServiceUnavailable, "retry", "an earlier request with the same idempotency key failed (%v): retry", st.wait.err)
			e.retryAfter = 1
			return 0, -1, e
		}
		return st.wait.idx, -1, nil
	}
	return 0, -1, fmt.Errorf("event %d has no answer in the index: it must be appended", i)
}

// finish records the indexes the request's owned keys were appended at
// (written[i] for event i; absent where the append failed) and releases its
// claims: appended keys answer at once from memory and go to the store to
// be completed, also when the request failed partway (err), so that its
// retry finds what was written. Claims whose entries were not written are
// deleted, and fail the requests waiting on them.
func (b *batch) finish(written map[int]uint64, err error) {
	if b.epochBegun {
		// Ends once the rows are handed to the writer: a watermark that
		// waits for this epoch is queued behind them.
		defer b.d.epochs.end(b.epoch)
	}
	var done []completion
	var released []keyID
	b.d.mu.Lock()
	for i, h := range b.ids {
		c := b.claims[h]
		if !b.states[i].owned || c == nil {
			continue
		}
		delete(b.claims, h)
		delete(b.d.pending, h)
		if idx, ok := written[i]; ok {
			b.d.completing[h] = indexEntry{idx, c.ev}
			done = append(done, completion{h, idx, c.ev})
			c.idx = idx
		} else {
			released = append(released, h)
			if err != nil {
				c.err = err
			} else {
				c.err = errors.New("the first request with this key failed")
			}
		}
		close(c.done)
	}
	b.d.mu.Unlock()
	if b.d.volatile {
		released = nil // no claim rows
		if ml := (*maybeLoggedError)(nil); errors.As(err, &ml) {
			// Entries that failed may be in the tree all the same: the
			// watermark stays below them, and the next start scans them.
			b.d.frozen.Store(true)
		}
	}
	if len(done) > 0 || len(released) > 0 {
		b.d.ops <- storeOp{complete: done, release: released}
	}
}

// abandon stands in for a process that dies after appending (tests): the
// batch's claims stay open in the store, for recovery to resolve, and the
// requests waiting on them here fail.
func (b *batch) abandon() {
	if b.d.volatile {
		b.d.frozen.Store(true) // the watermark must not pass these entries
	}
	if b.epochBegun {
		defer b.d.epochs.end(b.epoch)
	}
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	for h, c := range b.claims {
		delete(b.d.pending, h)
		c.err = errors.New("the process died")
		close(c.done)
	}
	b.claims = nil
}

// awaitRemote waits for claims that other frontends hold: it polls the
// store until each is complete (the other frontend's index answers) or
// gone (its append failed, or recovery found its frontend died before
// appending: the retry must be sent again).
func (d *idempotencyIndex) awaitRemote(remote map[keyID]*claim) {
	deadline := time.Now().Add(d.lease + 3*recoverEvery)
	for len(remote) > 0 {
		time.Sleep(remotePoll)
		hashes := make([][16]byte, 0, len(remote))
		for id := range remote {
			hashes = append(hashes, id.base())
		}
		rows, err := lookupKeys(context.Background(), d.store, hashes)
		for h, c := range remote {
			r, ok := rows[h]
			switch {
			case err != nil && time.Now().Before(deadline):
				continue
			case err != nil:
				c.err = fmt.Errorf("%w: %v", errIndexUnavailable, err)
			case ok && r.done && r.ev == c.ev:
				c.idx = r.idx
			case ok && !r.done && time.Now().Before(deadline):
				continue
			case ok && !r.done:
				c.err = errors.New("another frontend has been appending this event for too long")
			default:
				c.err = errors.New("the first request with this key failed")
			}
			delete(remote, h)
			close(c.done)
		}
	}
}

// remotePoll is how often a request polls for a key another frontend
// claimed. It gives up (503, retry) after the lease and three rounds of
// recovery: longer than a dead frontend takes to be found and recovered.
const remotePoll = 20 * time.Millisecond

// A storeOp is work for the writer.
type storeOp struct {
	claim    *claimOp
	complete []completion
	release  []keyID
	// mark, when not zero, is a watermark to commit behind the rows
	// handed over before it (volatile); done gets the outcome.
	mark     uint64
	markDone chan error
	// flush (volatile): write the completions that wait now.
	flush bool
}

// A claimOp is a request's begin, done by the writer.
type claimOp struct {
	source string
	evs    []keyedEvent
	// Answers: the batch, or an error (a *keyConflict, or the store
	// failing); remote claims for awaitRemote.
	batch  *batch
	remote map[keyID]*claim
	err    error
	done   chan struct{}
}

// writer is the only goroutine that writes to the store once the log runs.
// It gathers the claims, completions and releases of many requests into
// one transaction: one commit (and on SQLite one fsync) for all of them.
func (d *idempotencyIndex) writer() {
	defer close(d.writerDone)
	var retryDone []completion
	var retryReleased []keyID
	defer func() { d.unflushed.Store(len(retryDone) > 0) }()
	failing := false
	// volatile: completions are written in large transactions (flush),
	// not with every request's begin; until then retryDone holds them and
	// the completing map answers their retries.
	lastFlush := time.Now()
	flushTimer := time.NewTimer(flushEvery)
	defer flushTimer.Stop()
	for {
		var op storeOp
		ok := true
		if d.volatile && len(retryDone) > 0 {
			flushTimer.Reset(max(time.Until(lastFlush.Add(flushEvery)), 0))
			select {
			case op, ok = <-d.ops:
			case <-flushTimer.C:
				op.flush = true
			}
		} else {
			op, ok = <-d.ops
		}
		if !ok {
			break
		}
		group := []storeOp{op}
		n := len(op.complete) + len(op.release)
		if op.claim != nil {
			n += len(op.claim.evs)
		}
	gather:
		for n < 20000 {
			select {
			case op, ok := <-d.ops:
				if !ok {
					break gather
				}
				group = append(group, op)
				n += len(op.complete) + len(op.release)
				if op.claim != nil {
					n += len(op.claim.evs)
				}
			default:
				break gather
			}
		}
		var claims []*claimOp
		var marks []chan error
		var mark uint64
		flush := !d.volatile
		done, released := retryDone, retryReleased
		for _, op := range group {
			if op.claim != nil {
				claims = append(claims, op.claim)
			}
			flush = flush || op.flush
			done = append(done, op.complete...)
			released = append(released, op.release...)
			if op.markDone != nil {
				marks = append(marks, op.markDone)
				mark = max(mark, op.mark)
			}
		}
		if d.halted.Load() {
			for _, c := range claims {
				c.err = fmt.Errorf("%w: the log is stopping", errIndexUnavailable)
				close(c.done)
			}
			for _, m := range marks {
				m <- errFrozen
			}
			continue
		}
		if d.lossy.Load() {
			done, released = nil, nil
			d.frozen.Store(true)
		}
		if d.frozen.Load() {
			mark = 0
		}
		// volatile: the rows are written when a watermark is to be
		// committed behind them, when enough of them wait, or a second
		// after the last flush. Every row a crash loses meanwhile is above
		// the watermark, so the next start writes it from the leaves.
		flush = flush || mark > 0 || len(done) >= flushRows || time.Since(lastFlush) >= flushEvery
		write := done
		if !flush {
			write = nil
		}
		var err error
		if len(claims) > 0 || len(write) > 0 || len(released) > 0 || mark > 0 {
			err = d.commit(claims, write, released, mark)
		}
		for _, m := range marks {
			switch {
			case err != nil:
				m <- err
			case d.frozen.Load():
				m <- errFrozen
			default:
				m <- nil
			}
		}
		switch {
		case err == nil && !flush:
			retryDone, retryReleased = done, nil // written with a later transaction
		case err == nil:
			if failing {
				d.log.Info("the idempotency index is written again", "rows_caught_up", len(retryDone)+len(retryReleased))
			}
			failing = false
			retryDone, retryReleased = nil, nil
			lastFlush = time.Now()
			d.mu.Lock()
			for _, c := range done {
				delete(d.completing, c.id)
			}
			d.mu.Unlock()
		default:
			if !failing {
				d.log.Error("couldn't write the idempotency index; retrying with the next transaction (writes with keys are refused meanwhile; retries of what was appended are answered from memory)", "err", err)
			}
			failing = true
			// Completions stay in memory (completing) and are written with
			// the next transaction; so are releases.
			retryDone, retryReleased = done, released
			if len(retryDone)+len(retryReleased) > maxRetryRows {
				// Past this the claims stay open in the store: recovery
				// resolves them from the leaves at the next start.
				d.log.Error("too many idempotency rows waiting to be written; leaving them to recovery at the next start", "rows", len(retryDone)+len(retryReleased))
				retryDone, retryReleased = nil, nil
				d.frozen.Store(true) // the next start scans past the watermark
				if d.volatile {
					d.lostRows.Store(true)
				}
				d.mu.Lock()
				clear(d.completing)
				d.mu.Unlock()
			}
			for _, c := range claims {
				if !d.volatile && c.batch != nil {
					// The commit may have happened all the same (a
					// connection lost during COMMIT): delete the claims
					// with the next transaction, which is safe if not.
					for id := range c.batch.claims {
						retryReleased = append(retryReleased, id)
					}
				}
				d.dropClaims(c)
				c.err = fmt.Errorf("%w: %w", errIndexUnavailable, err)
			}
		}
		for _, c := range claims {
			if c.err != nil {
				d.dropClaims(c)
			}
			close(c.done)
		}
	}
	// The log is closing: write the rows still waiting (volatile), unless
	// the process stands for one that died.
	if d.volatile && len(retryDone) > 0 && !d.halted.Load() && !d.lossy.Load() {
		if err := d.commit(nil, retryDone, nil, 0); err == nil {
			d.mu.Lock()
			for _, c := range retryDone {
				delete(d.completing, c.id)
			}
			d.mu.Unlock()
			retryDone = nil
		} else {
			d.log.Error("couldn't write the idempotency index at close; the next start writes the rows from the leaves above the watermark", "rows", len(retryDone), "err", err)
		}
	}
}

// On a POSIX log (volatile) the writer writes completed rows at most
// flushEvery apart, or once flushRows of them wait: one transaction of many
// rows, sorted, dirties each page of the table once for all of them, where a
// transaction per request dirtied a page per key. They are bounded in memory
// (the completing map answers their retries until they are written).
const (
	flushEvery = time.Second
	flushRows  = 1 << 16
)

var errFrozen = errors.New("idempotency index missed rows; the watermark stays until the next start scans past it")

// SaveWatermark (volatile) moves the watermark to the tree size read by
// size, once every request that may have appended below it has handed its
// rows to the writer, and they are committed. It is called every second or
// so, and at shutdown.
func (d *idempotencyIndex) SaveWatermark(size func() (uint64, error)) error {
	if !d.volatile {
		return nil
	}
	// Read the size first: every entry below it was appended by a request
	// that began in the current epoch or an earlier one.
	s, err := size()
	if err != nil {
		return err
	}
	d.epochs.advance()
	if d.frozen.Load() {
		return errFrozen
	}
	if s == 0 {
		return nil
	}
	done := make(chan error, 1)
	d.ops <- storeOp{mark: s, markDone: done}
	return <-done
}

// maxRetryRows bounds the rows the writer keeps to write again after a
// failed transaction (a full disk, a database away).
const maxRetryRows = 1 << 20

// commit runs one transaction of the writer, retrying it when the database
// asks (a deadlock between frontends).
func (d *idempotencyIndex) commit(claims []*claimOp, done []completion, released []keyID, mark uint64) error {
	var from uint64
	if len(claims) > 0 && !d.volatile {
		var err error
		if from, err = d.size(); err != nil {
			return fmt.Errorf("couldn't read the tree size: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		err := d.commitOnce(claims, done, released, from, mark)
		if err == nil || !retryable(err) || attempt >= 5 {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
}

func (d *idempotencyIndex) commitOnce(claims []*claimOp, done []completion, released []keyID, from, mark uint64) error {
	ctx := context.Background()
	tx, err := d.store.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if len(done) > 0 && d.volatile {
		rows := make([]indexRow, len(done))
		for i, c := range done {
			rows[i] = indexRow{id: c.id, idx: c.idx, ev: c.ev}
		}
		// In key order: the B-tree's pages are visited in order, each once.
		slices.SortFunc(rows, func(a, b indexRow) int { return bytes.Compare(a.id[:], b.id[:]) })
		if err := tx.insertComplete(ctx, rows); err != nil {
			return err
		}
	} else if len(done) > 0 {
		lost, err := tx.complete(ctx, d.owner, done)
		if err != nil {
			return err
		}
		if lost > 0 {
			d.takeovers.Add(int64(lost))
			d.log.Error("recovery completed claims of this frontend in its place, having taken it for dead (its heartbeats did not reach the database for longer than the lease): their retries may have been logged twice", "claims", lost)
		}
	}
	if len(released) > 0 {
		if err := tx.release(ctx, d.owner, released); err != nil {
			return err
		}
	}
	if mark > 0 {
		if err := tx.setWatermark(ctx, mark); err != nil {
			return err
		}
	}
	for _, c := range claims {
		// A retried transaction decides again from scratch.
		d.dropClaims(c)
		c.err = nil
		if err := d.decide(ctx, tx, c, from); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// dropClaims forgets what decide registered for a claimOp whose
// transaction did not commit.
func (d *idempotencyIndex) dropClaims(c *claimOp) {
	if c.batch == nil {
		return
	}
	if c.batch.epochBegun {
		c.batch.epochBegun = false
		d.epochs.end(c.batch.epoch)
	}
	d.mu.Lock()
	for h, cl := range c.batch.claims {
		if d.pending[h] == cl {
			delete(d.pending, h)
		}
	}
	d.mu.Unlock()
	c.batch, c.remote = nil, nil
}

// decide resolves one request's keyed events: from memory (this request,
// this process's claims and completions), then from the store, claiming
// in tx the keys nobody has.
func (d *idempotencyIndex) decide(ctx context.Context, tx keyTx, op *claimOp, from uint64) error {
	evs := op.evs
	b := &batch{d: d, ids: make([]keyID, len(evs)), states: make([]keyState, len(evs)), claims: map[keyID]*claim{}}
	remote := map[keyID]*claim{}
	keys := make([]keyID, len(evs))
	variants := make([]keyID, len(evs))
	var want [][16]byte
	for i, e := range evs {
		b.states[i].sameAs = -1
		if e.key != "" {
			h := keyHash(op.source, e.key)
			keys[i], variants[i] = keyOf(h), variantOf(h, e.ev)
			want = append(want, h)
		}
	}
	// What the store holds for every key of the request, and its
	// variants: one lookup per key. Rows a claim of this process holds are
	// answered from memory below.
	rows, err := tx.lookup(ctx, want)
	if err != nil {
		return err
	}
	first := map[keyID]int{} // row: the first event of this request under it
	type found struct {
		ok       bool
		conflict bool
	}
	// lookup resolves event i under hash h: a retry of an event already
	// seen (in this request, in memory, in the store), or a conflict with
	// another event under h; neither when nobody has h.
	lookup := func(i int, h keyID) found {
		st, ev := &b.states[i], evs[i].ev
		if j, ok := first[h]; ok {
			if evs[j].ev != ev {
				return found{conflict: true}
			}
			st.sameAs = j
			return found{ok: true}
		}
		if c, ok := d.pending[h]; ok {
			if c.ev != ev {
				return found{conflict: true}
			}
			st.wait = c
		} else if e, ok := d.completing[h]; ok {
			if e.ev != ev {
				return found{conflict: true}
			}
			st.found, st.idx = true, e.idx
		} else if r, ok := rows[h]; ok {
			if r.ev != ev {
				return found{conflict: true}
			}
			if r.done {
				st.found, st.idx = true, r.idx
			} else {
				c := remote[h]
				if c == nil {
					c = &claim{ev: ev, done: make(chan struct{})}
					remote[h] = c
				}
				st.wait = c
			}
		} else {
			return found{}
		}
		first[h] = i
		return found{ok: true}
	}
	var claims []newClaim
	own := func(i int, h keyID) {
		c := &claim{ev: evs[i].ev, done: make(chan struct{})}
		b.claims[h] = c
		b.states[i].owned = true
		first[h] = i
		claims = append(claims, newClaim{h, evs[i].ev})
	}
	d.mu.Lock()
	for i, e := range evs {
		if e.key == "" {
			continue
		}
		h := keys[i]
		r := lookup(i, h)
		if !r.ok && !r.conflict {
			// Nothing under the key itself, but this very event may be
			// logged under its variant (its key's first claim failed after
			// the variant was appended): that is a retry.
			if lookup(i, variants[i]).ok {
				h = variants[i]
			} else {
				own(i, h)
			}
		}
		if r.conflict {
			hv := variants[i]
			if e.explicit {
				// This very event may be logged under the key as a variant
				// (an implicit key equal to this explicit one): that is a
				// retry. Otherwise the sender reused its key for another
				// event.
				if !lookup(i, hv).ok {
					conflict := &keyConflict{pos: i}
					if e, ok := d.completing[h]; ok {
						conflict.idx = e.idx
					} else if r, ok := rows[h]; ok && r.done {
						conflict.idx = r.idx
					} else if j, ok := first[h]; ok && b.states[j].found {
						conflict.idx = b.states[j].idx
					} else {
						conflict.pending = true
					}
					d.mu.Unlock()
					op.err = conflict
					return nil
				}
				h = hv
			} else {
				b.states[i].reused = true
				h = hv
				switch v := lookup(i, h); {
				case v.conflict:
					// Two events with one eventHash under one key: as
					// likely as a forged hash. Log the event without a
					// key rather than drop it.
					b.states[i].reused = false
					continue
				case !v.ok:
					own(i, h)
				}
			}
		}
		b.ids[i] = h
	}
	for h, c := range b.claims {
		d.pending[h] = c
	}
	if d.volatile {
		// The epoch begins before the claims can be appended under, and
		// ends in finish once their rows are handed to the writer.
		b.epoch, b.epochBegun = d.epochs.begin(), true
	}
	d.mu.Unlock()
	op.batch, op.remote = b, remote
	if len(claims) == 0 || d.volatile {
		return nil // volatile: the claims are the pending map's alone
	}
	inserted, err := tx.insertClaims(ctx, d.owner, from, claims)
	if err != nil {
		return err
	}
	if inserted == len(claims) {
		return nil // every one ours
	}
	// Another frontend may have claimed some of them since the lookup:
	// the rows say whose each claim is.
	var hs [][16]byte
	for _, c := range claims {
		hs = append(hs, c.id.base())
	}
	got, err := tx.lookup(ctx, hs)
	if err != nil {
		return err
	}
	for i, st := range b.states {
		h := b.ids[i]
		if !st.owned {
			continue
		}
		if r := got[h]; !r.done && r.owner == d.owner {
			continue // ours
		}
		// Lost to another frontend between the lookup and the insert:
		// wait for it if it is this event, else start this event over
		// (the client retries: 503).
		r := got[h]
		d.mu.Lock()
		delete(d.pending, h)
		d.mu.Unlock()
		delete(b.claims, h)
		b.states[i].owned = false
		if r.ev != evs[i].ev {
			// The claims this request did insert are deleted in the same
			// transaction: no other request should wait on them.
			var mine []keyID
			for id := range b.claims {
				mine = append(mine, id)
			}
			if err := tx.release(ctx, d.owner, mine); err != nil {
				return err
			}
			d.dropClaims(op)
			op.err = fmt.Errorf("%w: another frontend claimed the key for a different event at the same moment: retry", errIndexUnavailable)
			return nil
		}
		if r.done {
			b.states[i].found, b.states[i].idx = true, r.idx
			continue
		}
		c := remote[h]
		if c == nil {
			c = &claim{ev: r.ev, done: make(chan struct{})}
			remote[h] = c
		}
		b.states[i].wait = c
	}
	return nil
}
