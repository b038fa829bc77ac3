package log

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"modernc.org/sqlite" // the pure Go SQLite driver
)

// Dedup is the idempotency index: it maps (source, key) to the log index
// of the first entry written with that key, so that a sender's retry gets
// the first answer back instead of a second entry.
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
// the event is logged as a new entry under variantHash(source, key, event),
// which answers that event's own retries. An audit event is never dropped
// because somebody reused its ID.
//
// Lookups are answered from memory: the whole index is a hash map, about 70
// bytes per keyed entry (a million keyed events take about 70 MB). The
// SQLite file beside the log keeps the same rows, appended in log order so
// that writing them is sequential, and is read back into memory on start.
//
// The log is the record and this index is a cache of it: the header key
// travels inside the leaf and the id inside the event, so the index can be
// rebuilt from the leaves. A row reaches SQLite after Tessera returns the
// entry's index (one writer goroutine commits the rows of many requests in
// one transaction); a process that dies before that leaves entries with no
// rows. The watermark "indexed_to" says below which log index every keyed
// entry has its row, and on start Rebuild scans the leaves from the
// watermark to the tree size. The watermark moves only past entries whose
// requests have all handed their rows to the writer (see epochs), and it is
// committed behind those rows, so a crash at any moment is covered.
type Dedup struct {
	db  *sql.DB
	log *slog.Logger

	writes     chan writeReq // to the writer goroutine
	writerDone chan struct{}
	closeOnce  sync.Once

	writeMu sync.Mutex // serializes writing transactions

	mu      sync.Mutex // guards index and pending
	index   map[[16]byte]indexEntry
	pending map[[16]byte]*claim

	epochs epochs
	// frozen is set when rows could not be written: from then on the
	// watermark stays where it is, and the next start rebuilds past it.
	// The in-memory index still answers retries meanwhile.
	frozen atomic.Bool
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

// dedupSchemaVersion is the layout of the index file. An index of another
// version is dropped and rebuilt from the log, which is its record.
const dedupSchemaVersion = 2

const dedupSchema = `
CREATE TABLE IF NOT EXISTS idempotency_keys (
	idx INTEGER PRIMARY KEY, -- log index of the first entry with the key
	h   BLOB NOT NULL,       -- keyHash(source, key), or variantHash for a reused key
	ev  BLOB NOT NULL        -- eventHash of the entry's event
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('indexed_to', 0);
`

// OpenDedup opens (or creates) the index in the SQLite file at path, in WAL
// mode, and reads it into memory. Synchronous=NORMAL is enough: WAL keeps
// commits in order, so a durable watermark implies durable rows below it,
// and rows lost to a power cut are rebuilt from the log. Opening writes
// (the -wal and -shm files), so it fails on a full or read-only disk;
// sqliteMayBeDisk tells such a failure from a damaged file.
func OpenDedup(path string, logger *slog.Logger) (*Dedup, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("couldn't open idempotency index: %w", err)
	}
	if err := migrateDedup(db, logger); err != nil {
		db.Close()
		return nil, fmt.Errorf("couldn't open the idempotency index %s: %w%s", path, err, sqliteAdvice(err))
	}
	d := &Dedup{db: db, log: logger, index: map[[16]byte]indexEntry{}, pending: map[[16]byte]*claim{},
		writes: make(chan writeReq, 1024), writerDone: make(chan struct{})}
	if err := d.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w%s", err, sqliteAdvice(err))
	}
	d.epochs.init()
	go d.writer()
	return d, nil
}

// SQLite's primary result codes (https://sqlite.org/rescode.html) that tell
// apart a disk that refuses writes from a file that is not a usable index.
const (
	sqliteReadOnly = 8  // SQLITE_READONLY
	sqliteIOErr    = 10 // SQLITE_IOERR and its extended codes
	sqliteCorrupt  = 11 // SQLITE_CORRUPT
	sqliteFull     = 13 // SQLITE_FULL
	sqliteCantOpen = 14 // SQLITE_CANTOPEN
	sqliteNotADB   = 26 // SQLITE_NOTADB
)

// sqliteCode returns the primary result code of a SQLite error in err's
// chain, or 0 if there is none.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return 0
	}
	return e.Code() & 0xff
}

// sqliteMayBeDisk says whether err is a SQLite error that a full or
// read-only disk can cause. Opening an index in WAL mode writes (it creates
// the -wal and -shm files beside it and grows the -shm one), and SQLite
// seldom says "full" for that: a -shm file that cannot grow is
// SQLITE_IOERR_SHMSIZE, "disk I/O error (4874)", and one that cannot be
// created SQLITE_CANTOPEN or SQLITE_READONLY. A damaged file (SQLITE_CORRUPT,
// SQLITE_NOTADB) is never the disk's.
func sqliteMayBeDisk(err error) bool {
	switch sqliteCode(err) {
	case sqliteReadOnly, sqliteIOErr, sqliteFull, sqliteCantOpen:
		return true
	}
	return false
}

// sqliteAdvice says what to do about an index that cannot be opened for a
// reason of its own, to be appended to the error.
func sqliteAdvice(err error) string {
	switch sqliteCode(err) {
	case sqliteCorrupt, sqliteNotADB:
		return " (the file is damaged or is not an idempotency index; the index is a cache of the log: move the file away and start again, and the log rebuilds it from its entries)"
	case sqliteCantOpen, sqliteReadOnly:
		return " (check that it is a file, not a directory, and that the log's user may read and write it and the directory it is in)"
	}
	return ""
}

// migrateDedup creates the index's tables, or drops an index of an older
// layout (whose rows cannot be converted: they hold hashes) and sets its
// watermark to 0, so that Rebuild makes it again from the whole log.
func migrateDedup(db *sql.DB, logger *slog.Logger) error {
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`); err != nil {
		return err
	}
	var version int64
	err := db.QueryRow(`SELECT value FROM meta WHERE name = 'schema'`).Scan(&version)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if version != dedupSchemaVersion {
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'idempotency_keys'`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			logger.Warn("the idempotency index is of an older layout: dropping it; it is rebuilt from the log's leaves at this start", "layout", version, "now", dedupSchemaVersion)
		}
		for _, q := range []string{
			`DROP TABLE IF EXISTS idempotency_keys`,
			`DELETE FROM meta WHERE name = 'indexed_to'`,
			`INSERT OR REPLACE INTO meta (name, value) VALUES ('schema', ` + fmt.Sprint(dedupSchemaVersion) + `)`,
		} {
			if _, err := tx.Exec(q); err != nil {
				return err
			}
		}
	}
	if _, err := tx.Exec(dedupSchema); err != nil {
		return err
	}
	return tx.Commit()
}

// load reads every row into memory.
func (d *Dedup) load() error {
	rows, err := d.db.Query(`SELECT idx, h, ev FROM idempotency_keys ORDER BY idx`)
	if err != nil {
		return fmt.Errorf("couldn't read idempotency index: %w", err)
	}
	defer rows.Close()
	var h, ev []byte
	var idx int64
	for rows.Next() {
		if err := rows.Scan(&idx, &h, &ev); err != nil {
			return fmt.Errorf("couldn't read idempotency index: %w", err)
		}
		var k [16]byte
		e := indexEntry{idx: uint64(idx)}
		if copy(k[:], h) != len(k) || copy(e.ev[:], ev) != len(e.ev) {
			return fmt.Errorf("idempotency index: row %d has a %d-byte key hash and a %d-byte event hash", idx, len(h), len(ev))
		}
		if _, ok := d.index[k]; !ok {
			d.index[k] = e
		}
	}
	return rows.Err()
}

// Close stops the writer once it has committed what it was given, and
// closes the database.
func (d *Dedup) Close() error {
	d.closeOnce.Do(func() {
		close(d.writes)
		<-d.writerDone
	})
	return d.db.Close()
}

// Len returns the number of keys in the index.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.index)
}

// Watermark returns the log index below which every keyed entry has a row.
func (d *Dedup) Watermark() (uint64, error) {
	var v int64
	err := d.db.QueryRow(`SELECT value FROM meta WHERE name = 'indexed_to'`).Scan(&v)
	return uint64(v), err
}

// Rebuild scans the leaves from the watermark to size and writes the rows
// a crash may have lost, then moves the watermark to size. It must run
// before the server takes writes. readBundle reads an entry bundle as
// tlog-tiles serves it.
func (d *Dedup) Rebuild(ctx context.Context, size uint64, readBundle func(ctx context.Context, index uint64, p uint8) ([]byte, error)) (scanned uint64, err error) {
	from, err := d.Watermark()
	if err != nil {
		return 0, fmt.Errorf("couldn't read idempotency watermark: %w", err)
	}
	if from > size {
		return 0, fmt.Errorf("idempotency index covers %d entries but the log has only %d: is this the index of another log?", from, size)
	}
	var rows []dedupRow
	for i := from / layout.EntryBundleWidth; i*layout.EntryBundleWidth < size; i++ {
		start := i * layout.EntryBundleWidth
		raw, err := readBundle(ctx, i, layout.PartialTileSize(0, i, size))
		if err != nil {
			return scanned, fmt.Errorf("couldn't read entry bundle %d: %w", i, err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return scanned, fmt.Errorf("couldn't parse entry bundle %d: %w", i, err)
		}
		for j, e := range b.Entries {
			idx := start + uint64(j)
			if idx < from || idx >= size {
				continue
			}
			scanned++
			source, key, ev, ok := leafKey(e)
			if !ok {
				continue
			}
			// The first entry with a key wins, as it did when written; a
			// later entry with another event under the key was logged as a
			// reused key, and answers its own retries.
			h := keyHash(source, key)
			if cur, ok := d.index[h]; ok && cur.ev != ev {
				h = variantHash(source, key, ev)
			}
			if _, ok := d.index[h]; !ok {
				d.index[h] = indexEntry{idx, ev}
				rows = append(rows, dedupRow{h, idx, ev})
			}
		}
	}
	return scanned, d.insert(rows, size)
}

// leafKey returns the idempotency key of an event leaf, if it has one, and
// the eventHash of its event.
func leafKey(leaf []byte) (source, key string, ev [16]byte, ok bool) {
	l, err := checkpoint.ParseLeaf(leaf)
	if err != nil {
		return "", "", ev, false // a raw entry
	}
	if l.IdempotencyKey != "" {
		return l.Source, "k:" + l.IdempotencyKey, eventHash(l.Event), true
	}
	e, err := checkpoint.CanonicalEvent(l.Event)
	if err != nil || e.ID.IsZero() {
		return "", "", ev, false
	}
	return l.Source, "i:" + e.ID.Key(), eventHash(l.Event), true
}

type dedupRow struct {
	h   [16]byte
	idx uint64
	ev  [16]byte
}

// insert writes rows, and moves the watermark to mark when mark > 0.
func (d *Dedup) insert(rows []dedupRow, mark uint64) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	tx, err := d.db.Begin()
	if err != nil {
		return fmt.Errorf("couldn't write idempotency index: %w", err)
	}
	defer tx.Rollback()
	// Many rows per statement: the per-statement cost of database/sql and
	// the driver, not SQLite's append, is what dominates one row at a time.
	const perStmt = 128
	var stmt *sql.Stmt
	args := make([]any, 0, 3*perStmt)
	for len(rows) > 0 {
		n := min(len(rows), perStmt)
		args = args[:0]
		for _, r := range rows[:n] {
			args = append(args, int64(r.idx), r.h[:], r.ev[:])
		}
		var err error
		if n == perStmt {
			if stmt == nil {
				if stmt, err = tx.Prepare(insertRowsSQL(perStmt)); err != nil {
					return fmt.Errorf("couldn't write idempotency index: %w", err)
				}
				defer stmt.Close()
			}
			_, err = stmt.Exec(args...)
		} else {
			_, err = tx.Exec(insertRowsSQL(n), args...)
		}
		if err != nil {
			return fmt.Errorf("couldn't write idempotency index: %w", err)
		}
		rows = rows[n:]
	}
	if mark > 0 {
		if _, err := tx.Exec(`UPDATE meta SET value = ? WHERE name = 'indexed_to' AND value < ?`, int64(mark), int64(mark)); err != nil {
			return fmt.Errorf("couldn't write idempotency watermark: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("couldn't write idempotency index: %w", err)
	}
	return nil
}

// insertRowsSQL is an INSERT of n rows.
func insertRowsSQL(n int) string {
	return "INSERT OR IGNORE INTO idempotency_keys (idx, h, ev) VALUES (?, ?, ?)" + strings.Repeat(", (?, ?, ?)", n-1)
}

// keyHash names a (source, key) pair: the first 16 bytes of SHA-256 over
// both, length-prefixed. A collision (about 2^-64 after 2^32 keys) is as
// unlikely as a forged hash.
func keyHash(source, key string) [16]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(source)))
	h.Write(n[:])
	h.Write([]byte(source))
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	var out [16]byte
	copy(out[:], h.Sum(sum[:0]))
	return out
}

// variantHash names a key reused for another event: (source, key, event),
// each length-prefixed, under a label of its own so that it never equals a
// keyHash.
func variantHash(source, key string, ev [16]byte) [16]byte {
	h := sha256.New()
	var n [8]byte
	h.Write([]byte("tidemark reused key\x00"))
	for _, part := range []string{source, key} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	h.Write(ev[:])
	var sum [sha256.Size]byte
	var out [16]byte
	copy(out[:], h.Sum(sum[:0]))
	return out
}

// eventHash names an event: the first 16 bytes of SHA-256 over its
// canonical JSON. Two events under one key are the same event (a retry)
// exactly when these are equal; 128 bits leave no room for a sender to
// craft a second event that passes for the first.
func eventHash(canonical []byte) [16]byte {
	sum := sha256.Sum256(canonical)
	var out [16]byte
	copy(out[:], sum[:16])
	return out
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
	// logged as a new entry under variantHash.
	reused bool
}

// A batch is one request's keyed events, from begin to finish.
type batch struct {
	d      *Dedup
	hashes [][16]byte // per event, the hash it is indexed under; zero for events without a key
	keyed  []bool
	states []keyState
	epoch  uint64
	claims map[[16]byte]*claim // owned claims
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

// begin claims the keys of one request's events and says for each what to
// do. It refuses the whole request, changing nothing, when an explicit key
// was used for a different event. Otherwise finish must be called once the
// request is done, whatever happened.
func (d *Dedup) begin(source string, evs []keyedEvent) (*batch, error) {
	b := &batch{d: d, hashes: make([][16]byte, len(evs)), keyed: make([]bool, len(evs)),
		states: make([]keyState, len(evs)), claims: map[[16]byte]*claim{}}
	first := map[[16]byte]int{} // hash: the first event of this request under it
	// lookup resolves event i under hash h: a retry of an event already
	// seen (in this request, in the index, or in flight), a new claim (when
	// mayClaim), or a conflict with another event under h.
	lookup := func(i int, h [16]byte, mayClaim bool) (resolved, conflict bool) {
		st, ev := &b.states[i], evs[i].ev
		if j, ok := first[h]; ok {
			if evs[j].ev != ev {
				return false, true
			}
			st.sameAs = j
			return true, false
		}
		if e, ok := d.index[h]; ok {
			if e.ev != ev {
				return false, true
			}
			st.found, st.idx = true, e.idx
		} else if c, ok := d.pending[h]; ok {
			if c.ev != ev {
				return false, true
			}
			st.wait = c
		} else if mayClaim {
			b.claims[h] = &claim{ev: ev, done: make(chan struct{})}
			st.owned = true
		} else {
			return false, false
		}
		first[h] = i
		return true, false
	}
	hashes := make([][16]byte, len(evs))
	variants := make([][16]byte, len(evs))
	for i, e := range evs {
		if e.key != "" {
			hashes[i] = keyHash(source, e.key)
			variants[i] = variantHash(source, e.key, e.ev)
		}
	}
	d.mu.Lock()
	for i, e := range evs {
		b.states[i].sameAs = -1
		if e.key == "" {
			continue
		}
		h := hashes[i]
		resolved, conflict := lookup(i, h, false)
		if !resolved && !conflict {
			// Nothing under the key itself, but this very event may be
			// logged under its variant: the index file holds one row per
			// log index, so a crash that kept a variant's row and lost the
			// key's leaves Rebuild's mapping of the key in memory only, and
			// the next start has the variant alone. That is a retry.
			if found, _ := lookup(i, variants[i], false); found {
				h = variants[i]
			} else {
				lookup(i, h, true)
			}
		}
		if conflict {
			hv := variants[i]
			if e.explicit {
				// This very event may be logged under the key as a variant
				// (an implicit key equal to this explicit one, indexed
				// first after a rebuild): that is a retry. Otherwise the
				// sender reused its key for another event.
				if resolved, _ := lookup(i, hv, false); !resolved {
					conflict := &keyConflict{pos: i}
					if cur, ok := d.index[h]; ok {
						conflict.idx = cur.idx
					} else if j, ok := first[h]; ok && b.states[j].found {
						conflict.idx = b.states[j].idx
					} else {
						conflict.pending = true
					}
					d.mu.Unlock()
					return nil, conflict
				}
				h = hv
			} else {
				b.states[i].reused = true
				h = hv
				if _, conflict := lookup(i, h, true); conflict {
					// Two events with one variantHash: as likely as a
					// forged hash. Log the event without a key rather
					// than drop it.
					b.states[i].reused = false
					continue
				}
			}
		}
		b.hashes[i], b.keyed[i] = h, true
	}
	for h, c := range b.claims {
		d.pending[h] = c
	}
	// The epoch begins before the claims can be appended under, and ends
	// in finish once their rows are handed to the writer.
	b.epoch = d.epochs.begin()
	d.mu.Unlock()
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

// finish records the indexes the request's owned keys were appended at
// (written[i] for event i; absent where the append failed) and releases its
// claims: appended keys go into the index at once, and their rows to the
// writer, also when the request failed partway (err), so that its retry
// finds what was written. Keys that were not written fail their claims.
func (b *batch) finish(written map[int]uint64, err error) {
	defer b.d.epochs.end(b.epoch)
	var w writeReq
	b.d.mu.Lock()
	for i, h := range b.hashes {
		c := b.claims[h]
		if !b.states[i].owned || c == nil {
			continue
		}
		delete(b.claims, h)
		delete(b.d.pending, h)
		if idx, ok := written[i]; ok {
			b.d.index[h] = indexEntry{idx, c.ev}
			w.rows = append(w.rows, dedupRow{h, idx, c.ev})
			c.idx = idx
		} else if err != nil {
			c.err = err
		} else {
			c.err = errors.New("the first request with this key failed")
		}
		close(c.done)
	}
	b.d.mu.Unlock()
	if len(w.rows) > 0 {
		// Handed over before the epoch ends: a watermark that waits for
		// this epoch is queued behind these rows.
		b.d.writes <- w
	}
}

// A writeReq is work for the writer: rows to insert, or a watermark to save.
type writeReq struct {
	rows []dedupRow
	mark uint64
	done chan error // for watermarks: the commit's outcome
}

// maxRetryRows bounds the rows the writer keeps to write again after a
// failed transaction (a full disk); past it they are dropped and the
// watermark stays until the next start rebuilds them from the log.
const maxRetryRows = 1 << 20

// writer commits the rows of many requests in one transaction. It is the
// only goroutine that writes to the database once the server runs. Rows of
// a transaction that failed (a full or read-only disk) are written again
// with the next one, so the index file catches up by itself once the disk
// does; the watermark is committed with them, never before them.
func (d *Dedup) writer() {
	defer close(d.writerDone)
	var retry []dedupRow
	for w := range d.writes {
		group := []writeReq{w}
		n := len(w.rows)
	gather:
		for n < 50000 {
			select {
			case w, ok := <-d.writes:
				if !ok {
					break gather
				}
				group = append(group, w)
				n += len(w.rows)
			default:
				break gather
			}
		}
		rows := retry
		var mark uint64
		for _, w := range group {
			rows = append(rows, w.rows...)
			mark = max(mark, w.mark)
		}
		if d.frozen.Load() {
			mark = 0
		}
		err := d.insert(rows, mark)
		switch {
		case err == nil:
			if len(retry) > 0 {
				d.log.Info("the idempotency index is written again", "rows_caught_up", len(retry))
			}
			retry = nil
		case len(rows) > maxRetryRows:
			// The entries are in the log; only the file missed them. Keep
			// the watermark below them so that the next start rebuilds the
			// rows; the in-memory index answers their retries until then.
			d.frozen.Store(true)
			retry = nil
			d.log.Error("couldn't write the idempotency index; the next start rebuilds it from the log", "err", err)
		default:
			if retry == nil {
				d.log.Error("couldn't write the idempotency index; retrying with the next rows (the in-memory index answers meanwhile)", "err", err)
			}
			retry = rows
		}
		for _, w := range group {
			if w.done != nil {
				if err == nil && d.frozen.Load() {
					err = errFrozen
				}
				w.done <- err
			}
		}
	}
}

var errFrozen = errors.New("idempotency index missed rows; the watermark stays until the next start rebuilds them")

// SaveWatermark moves the watermark to the tree size read by size, once
// every request that may have appended below it has handed its rows to the
// writer, and they are committed. It is called every second or so, and at
// shutdown.
func (d *Dedup) SaveWatermark(size func() (uint64, error)) error {
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
	d.writes <- writeReq{mark: s, done: done}
	return <-done
}

// epochs counts requests in flight by the epoch they began in, so that the
// watermark can wait for all requests older than a moment to finish without
// stopping new ones.
type epochs struct {
	advanceMu sync.Mutex // serializes advance

	mu     sync.Mutex // guards cur, active
	cond   *sync.Cond
	cur    uint64
	active map[uint64]int
}

func (e *epochs) init() {
	e.cond = sync.NewCond(&e.mu)
	e.active = map[uint64]int{}
}

func (e *epochs) begin() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active[e.cur]++
	return e.cur
}

func (e *epochs) end(epoch uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active[epoch]--
	if e.active[epoch] == 0 {
		delete(e.active, epoch)
		e.cond.Broadcast()
	}
}

// advance starts a new epoch and waits until no request of an older one is
// in flight.
func (e *epochs) advance() {
	e.advanceMu.Lock()
	defer e.advanceMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cur
	e.cur++
	for {
		busy := false
		for ep := range e.active {
			if ep <= old {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		e.cond.Wait()
	}
}
