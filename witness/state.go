package witness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the pure Go SQLite driver
)

// DBFile is the witness's state, beside its key, in the data directory.
const DBFile = "witness.db"

// lockFile keeps a second witness process off the same state: the in-memory
// copy of the state is only right if this process is the only writer.
const lockFile = "witness.lock"

// maxBatch bounds how many writes one transaction (one fsync) carries.
const maxBatch = 1024

// maxGather bounds how long the writer, holding writes, waits for the writes
// of requests that have passed their checks and are signing (state.coming)
// before it commits: a few signatures' time, so that under load they share
// the transaction rather than each pay for its own.
const maxGather = 500 * time.Microsecond

// errCAS is the compare-and-swap finding the stored checkpoint is not the one
// the caller checked against. With one process per state and the per-origin
// lock, it never happens; it is there so that nothing else could roll back a
// log, whatever goes wrong above it.
var errCAS = errors.New("witness: the stored checkpoint changed under the request")

// errClosing is returned to requests that arrive while the witness stops.
var errClosing = errors.New("witness: shutting down")

// A record is the last checkpoint the witness cosigned for one origin, as
// stored: what the log signed and what the witness signed, nothing else a
// requester sent.
type record struct {
	Size    uint64
	Root    []byte    // 32 bytes
	Body    []byte    // the checkpoint body (tlog-checkpoint text)
	LogSigs []byte    // the verified log signature lines, each "— name base64\n"
	Cosig   []byte    // the witness's cosignature line
	Updated time.Time // when it was stored
}

// signedNote returns the checkpoint as the log signed it: the body, a blank
// line and the log's verified signatures.
func (r *record) signedNote() []byte {
	b := make([]byte, 0, len(r.Body)+1+len(r.LogSigs))
	b = append(append(append(b, r.Body...), '\n'), r.LogSigs...)
	return b
}

// cosigned returns what GET /<hash>/checkpoint serves: the signed note with
// the witness's cosignature appended.
func (r *record) cosigned() []byte {
	return append(r.signedNote(), r.Cosig...)
}

// originState is one origin's place in memory.
type originState struct {
	// sem is held (one token) by the one request at a time that may read rec,
	// check a new checkpoint against it, write the state and answer. Holding
	// it across the check, the signature and the durable write is what makes
	// the check and the write atomic, as tlog-witness requires.
	sem chan struct{}
	// rec is the stored record, nil if the witness never cosigned for the
	// origin. Written only by the holder of sem, after the write is durable;
	// read under sem, or through snapshot for monitoring.
	mu  sync.Mutex // guards rec for readers that do not hold sem
	rec *record
}

func (o *originState) lock(ctx context.Context) error {
	select {
	case o.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *originState) unlock() { <-o.sem }

func (o *originState) snapshot() *record {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rec
}

func (o *originState) set(r *record) {
	o.mu.Lock()
	o.rec = r
	o.mu.Unlock()
}

// state is the durable record of what the witness cosigned: SQLite in WAL
// mode with synchronous=FULL, so that a committed transaction has been
// fsynced, and a copy of every row in memory, read by requests.
//
// All writes go through one goroutine (writer) that takes every write
// waiting at the time, and those of requests about to write (expect), into
// one transaction: group commit, one fsync for many requests. A write is
// durable when commit returns nil, and not before.
type state struct {
	dir  string // the data directory, probed when a write fails
	db   *sql.DB
	lock *os.File
	// insert and update are the compare-and-swap's statements, prepared once.
	insert, update *sql.Stmt

	// journalMode and synchronous are SQLite's settings as read back at
	// open (they must be "wal" and 2, FULL), for the metrics.
	journalMode string
	synchronous int

	mu      sync.Mutex // guards origins and byHash
	origins map[string]*originState
	byHash  map[string]string // hex SHA-256 of origin: origin, for origins with a record

	writes chan *writeOp // unbuffered: a send succeeds only when the writer takes it
	// coming counts the checkpoint writes announced (expect) and not yet
	// taken by the writer: requests that passed their checks and are
	// signing. The writer waits up to gather for them; when it is 0 it
	// commits at once. wake (buffered) tells it coming went down.
	coming atomic.Int64
	wake   chan struct{}
	gather time.Duration // maxGather; tests set it
	quit   chan struct{} // closed by close
	done   chan struct{} // closed when the writer has stopped

	// afterCommit, when set by a test, runs after each transaction commits.
	afterCommit func(n int)
	// batches counts the transactions and the writes they carried.
	onBatch func(n int, d time.Duration)
}

// A writeOp is one write waiting for a transaction.
type writeOp struct {
	fn   func(tx *sql.Tx) error // must not change anything when it fails with errCAS
	err  error
	done chan struct{}
}

const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
	origin   TEXT PRIMARY KEY,
	size     INTEGER NOT NULL, -- a uint64 stored as its int64 bit pattern: compared for equality only
	root     BLOB NOT NULL,
	body     BLOB NOT NULL,
	log_sigs BLOB NOT NULL,
	cosig    BLOB NOT NULL,
	updated  INTEGER NOT NULL -- Unix nanoseconds
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evidence (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	origin TEXT NOT NULL,
	digest BLOB NOT NULL UNIQUE,
	found  INTEGER NOT NULL,
	data   BLOB NOT NULL -- the Evidence as JSON
);
CREATE INDEX IF NOT EXISTS evidence_origin ON evidence(origin);
`

// dsn opens SQLite with the settings the no-rollback promise relies on:
// WAL, and synchronous=FULL so that every commit fsyncs the WAL (NORMAL
// would let the last commits vanish on power loss, after their cosignatures
// left).
func dsn(path string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"
}

// openState opens (or, with create, creates) the state in dir and binds it
// to the witness key vkey: a state created for one key refuses any other.
func openState(dir, vkey string, create bool) (*state, error) {
	lf, err := os.OpenFile(dir+"/"+lockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("couldn't open the lock file: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("another witness is running on %s (couldn't lock %s: %w)", dir, lockFile, err)
	}
	path := dir + "/" + DBFile
	if _, err := os.Stat(path); err != nil && !create {
		lf.Close()
		return nil, fmt.Errorf("couldn't find the witness state: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("couldn't open the witness state: %w", err)
	}
	// One connection: the writer goroutine is the only user after startup.
	db.SetMaxOpenConns(1)
	s := &state{
		dir: dir, db: db, lock: lf,
		origins: map[string]*originState{},
		byHash:  map[string]string{},
		writes:  make(chan *writeOp),
		wake:    make(chan struct{}, 1),
		gather:  maxGather,
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := s.init(vkey); err != nil {
		db.Close()
		lf.Close()
		return nil, err
	}
	if s.insert, err = db.Prepare(`INSERT INTO checkpoints(origin, size, root, body, log_sigs, cosig, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(origin) DO NOTHING`); err == nil {
		s.update, err = db.Prepare(`UPDATE checkpoints SET size = ?, root = ?, body = ?, log_sigs = ?, cosig = ?, updated = ?
		WHERE origin = ? AND size = ? AND root = ?`)
	}
	if err != nil {
		db.Close()
		lf.Close()
		return nil, fmt.Errorf("couldn't prepare the state's statements: %w", err)
	}
	go s.writer()
	return s, nil
}

func (s *state) init(vkey string) error {
	var mode string
	var sync int
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("couldn't open the witness state: %w", err)
	}
	if err := s.db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("couldn't open the witness state: %w", err)
	}
	if mode != "wal" || sync != 2 {
		return fmt.Errorf("witness state: SQLite has journal_mode=%s synchronous=%d, want wal and 2 (FULL): refusing to run without durable commits", mode, sync)
	}
	s.journalMode, s.synchronous = mode, sync
	if _, err := s.db.Exec(schema); err != nil {
		return fmt.Errorf("couldn't create the witness state's tables: %w", err)
	}
	var stored string
	err := s.db.QueryRow("SELECT value FROM meta WHERE key = 'vkey'").Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := s.db.Exec("INSERT INTO meta(key, value) VALUES ('vkey', ?)", vkey); err != nil {
			return fmt.Errorf("couldn't write the witness state: %w", err)
		}
	case err != nil:
		return fmt.Errorf("couldn't read the witness state: %w", err)
	case stored != vkey:
		return fmt.Errorf("the witness state belongs to key %s, not to %s: a witness's key and state are one identity. Use the key this state was made with, or give the new key a new data directory", stored, vkey)
	}
	rows, err := s.db.Query("SELECT origin, size, root, body, log_sigs, cosig, updated FROM checkpoints")
	if err != nil {
		return fmt.Errorf("couldn't read the witness state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var origin string
		var size, updated int64
		r := &record{}
		if err := rows.Scan(&origin, &size, &r.Root, &r.Body, &r.LogSigs, &r.Cosig, &updated); err != nil {
			return fmt.Errorf("couldn't read the witness state: %w", err)
		}
		r.Size = uint64(size)
		r.Updated = time.Unix(0, updated).UTC()
		o := s.entry(origin)
		o.rec = r
		s.byHash[originHash(origin)] = origin
	}
	return rows.Err()
}

// entry returns the in-memory state of origin, creating an empty one. Call
// it only for origins the witness knows, so memory follows the log list,
// not what requesters send.
func (s *state) entry(origin string) *originState {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.origins[origin]
	if !ok {
		o = &originState{sem: make(chan struct{}, 1)}
		s.origins[origin] = o
	}
	return o
}

// byOriginHash returns the stored record of the origin whose hex SHA-256 is h.
func (s *state) byOriginHash(h string) (string, *record) {
	s.mu.Lock()
	origin, ok := s.byHash[h]
	o := s.origins[origin]
	s.mu.Unlock()
	if !ok || o == nil {
		return "", nil
	}
	return origin, o.snapshot()
}

// lookup returns the stored record of origin, or nil.
func (s *state) lookup(origin string) *record {
	s.mu.Lock()
	o := s.origins[origin]
	s.mu.Unlock()
	if o == nil {
		return nil
	}
	return o.snapshot()
}

// expect announces a write the caller is about to make with swap, which
// retracts it once the writer has taken it. The returned func retracts it
// too, for a caller that gives up before: call it in any case (deferred);
// only the first call counts.
func (s *state) expect() (retract func()) {
	s.coming.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.coming.Add(-1)
			select {
			case s.wake <- struct{}{}:
			default:
			}
		})
	}
}

// swap durably replaces the record of origin, which must be old (nil: none),
// by new. The caller holds o's lock. When swap returns nil the new record is
// committed and fsynced, and o shows it; on any error o is unchanged.
//
// This is the witness's one write path for checkpoints, and the reason it
// never rolls a log back: the UPDATE matches only the exact row the request
// was checked against (size and root), so a write based on a stale read
// changes nothing and fails.
func (s *state) swap(ctx context.Context, origin string, o *originState, old, new *record, retract func()) error {
	err := s.commit(ctx, retract, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if old == nil {
			res, err = tx.Stmt(s.insert).Exec(origin, int64(new.Size), new.Root, new.Body, new.LogSigs, new.Cosig, new.Updated.UnixNano())
		} else {
			res, err = tx.Stmt(s.update).Exec(int64(new.Size), new.Root, new.Body, new.LogSigs, new.Cosig, new.Updated.UnixNano(),
				origin, int64(old.Size), old.Root)
		}
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return errCAS
		}
		return nil
	})
	if err != nil {
		return err
	}
	o.set(new)
	if old == nil {
		s.mu.Lock()
		s.byHash[originHash(origin)] = origin
		s.mu.Unlock()
	}
	return nil
}

// commit runs fn in a transaction, with whatever other writes are waiting,
// and returns once that transaction is committed (durable) or failed. fn
// returning errCAS fails that write alone; any other error fails the whole
// transaction, whose writers see it.
//
// retract, if not nil, is called once the writer has taken the write (or
// it was not offered): the writer then stops waiting for it (expect).
func (s *state) commit(ctx context.Context, retract func(), fn func(tx *sql.Tx) error) error {
	op := &writeOp{fn: fn, done: make(chan struct{})}
	if retract != nil {
		defer retract()
	}
	select {
	case s.writes <- op:
		if retract != nil {
			retract()
		}
	case <-s.quit:
		return errClosing
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once taken, a write is always finished: wait even if ctx ends, so the
	// caller never answers while its write may still land.
	<-op.done
	return op.err
}

// writer owns the database connection after startup. It blocks for one
// write, then takes every write already waiting (up to maxBatch), and, while
// requests that passed their checks are still signing (coming), waits for
// their writes too, up to s.gather; then it commits them all in one
// transaction. While it commits, new writes queue behind the unbuffered
// channel and make the next batch. A write with nothing coming behind it (an
// idle witness) is committed at once.
func (s *state) writer() {
	defer close(s.done)
	var gather *time.Timer
	for {
		var batch []*writeOp
		select {
		case op := <-s.writes:
			batch = append(batch, op)
		case <-s.quit:
			return
		}
		gathering := false
	drain:
		for len(batch) < maxBatch {
			select {
			case op := <-s.writes:
				batch = append(batch, op)
				continue
			default:
			}
			if s.coming.Load() == 0 {
				break
			}
			if !gathering {
				gathering = true
				if gather == nil {
					gather = time.NewTimer(s.gather)
				} else {
					gather.Reset(s.gather)
				}
			}
			select {
			case op := <-s.writes:
				batch = append(batch, op)
			case <-s.wake: // look at coming again
			case <-gather.C:
				break drain
			}
		}
		if gathering {
			gather.Stop()
		}
		start := time.Now()
		err := s.runBatch(batch)
		for _, op := range batch {
			if err != nil {
				op.err = err
			}
			close(op.done)
		}
		if s.onBatch != nil {
			s.onBatch(len(batch), time.Since(start))
		}
	}
}

// runBatch runs a batch in one transaction. A failure caused by the disk
// (full, read-only) comes back as a *storageError.
func (s *state) runBatch(batch []*writeOp) error {
	tx, err := s.db.Begin()
	if err != nil {
		return classifyStateError(s.dir, fmt.Errorf("couldn't start a state transaction: %w", err))
	}
	for _, op := range batch {
		op.err = op.fn(tx)
		if op.err != nil && !errors.Is(op.err, errCAS) {
			_ = tx.Rollback()
			return classifyStateError(s.dir, fmt.Errorf("couldn't write the witness state: %w", op.err))
		}
	}
	// A failed COMMIT is rolled back (the driver makes sure of it), so the
	// database is as before and so is memory, which changes only after.
	if err := tx.Commit(); err != nil {
		return classifyStateError(s.dir, fmt.Errorf("couldn't commit the witness state: %w", err))
	}
	if s.afterCommit != nil {
		s.afterCommit(len(batch))
	}
	return nil
}

// close stops the writer once it is idle and closes the database. Writes
// already taken are finished first.
func (s *state) close() error {
	close(s.quit)
	<-s.done
	err := s.db.Close()
	s.lock.Close()
	return err
}

// originHash is how the monitoring endpoint names an origin: lowercase hex
// SHA-256 of the origin line.
func originHash(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:])
}

func sameRoot(r *record, root []byte) bool { return r != nil && bytes.Equal(r.Root, root) }
