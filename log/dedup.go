package log

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	_ "modernc.org/sqlite" // the pure Go SQLite driver
)

// Dedup is the idempotency index: it maps (source, key) to the log index
// of the first entry written with that key, so that a sender's retry gets
// the first answer back instead of a second entry.
//
// A key is the Idempotency-Key header ("k:" prefix; in a batch the header
// key with "/<line>" appended) or, when there is none, the event's "id"
// member ("i:" prefix).
//
// The log is the record and this index is a cache of it: the header key
// travels inside the leaf and the id inside the event, so the index can be
// rebuilt from the leaves. Rows are written after Tessera returns an index
// and before the client is answered; a process that dies in between leaves
// entries with no rows. The watermark "indexed_to" says below which log
// index every keyed entry is known to have its row, and on start Rebuild
// scans the leaves from the watermark to the tree size. The watermark moves
// only past entries whose requests have all finished writing their rows
// (see epochs), so a crash at any moment is covered.
type Dedup struct {
	db *sql.DB

	writeMu sync.Mutex // serializes writing transactions

	mu      sync.Mutex // guards pending
	pending map[dedupKey]*claim

	epochs epochs
	// frozen is set when a row could not be written: from then on the
	// watermark stays where it is, and the next start rebuilds past it.
	frozen atomic.Bool
}

type dedupKey struct{ source, key string }

// A claim is an in-flight request's hold on a key: later requests with the
// same key wait for it rather than appending again.
type claim struct {
	done chan struct{}
	idx  uint64
	err  error
}

const dedupSchema = `
CREATE TABLE IF NOT EXISTS idempotency (
	source TEXT NOT NULL,
	key    TEXT NOT NULL,
	idx    INTEGER NOT NULL,
	PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('indexed_to', 0);
`

// OpenDedup opens (or creates) the index in the SQLite file at path, in WAL
// mode. Synchronous=NORMAL is enough: WAL keeps commits in order, so a
// durable watermark implies durable rows below it, and rows lost to a power
// cut are rebuilt from the log.
func OpenDedup(path string) (*Dedup, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("couldn't open idempotency index: %w", err)
	}
	if _, err := db.Exec(dedupSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("couldn't create idempotency index in %s: %w", path, err)
	}
	d := &Dedup{db: db, pending: map[dedupKey]*claim{}}
	d.epochs.init()
	return d, nil
}

// Close closes the database.
func (d *Dedup) Close() error { return d.db.Close() }

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
			if source, key, ok := leafKey(e); ok {
				rows = append(rows, dedupRow{dedupKey{source, key}, idx})
			}
		}
	}
	// Rows are inserted in log order with INSERT OR IGNORE: the first entry
	// with a key wins, as it did when it was written.
	if err := d.insert(rows, size); err != nil {
		return scanned, err
	}
	return scanned, nil
}

// leafKey returns the idempotency key of an event leaf, if it has one.
func leafKey(leaf []byte) (source, key string, ok bool) {
	l, err := checkpoint.ParseLeaf(leaf)
	if err != nil {
		return "", "", false // a raw entry
	}
	if l.IdempotencyKey != "" {
		return l.Source, "k:" + l.IdempotencyKey, true
	}
	ev, err := checkpoint.CanonicalEvent(l.Event)
	if err != nil || ev.ID == "" {
		return "", "", false
	}
	return l.Source, "i:" + ev.ID, true
}

type dedupRow struct {
	k   dedupKey
	idx uint64
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
	if len(rows) > 0 {
		stmt, err := tx.Prepare(`INSERT OR IGNORE INTO idempotency (source, key, idx) VALUES (?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("couldn't write idempotency index: %w", err)
		}
		for _, r := range rows {
			if _, err := stmt.Exec(r.k.source, r.k.key, int64(r.idx)); err != nil {
				return fmt.Errorf("couldn't write idempotency index: %w", err)
			}
		}
		stmt.Close()
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

// lookup returns the indexes already recorded for keys of one source.
func (d *Dedup) lookup(source string, keys []string) (map[string]uint64, error) {
	found := map[string]uint64{}
	const chunk = 500
	for len(keys) > 0 {
		n := min(len(keys), chunk)
		args := make([]any, 0, n+1)
		args = append(args, source)
		for _, k := range keys[:n] {
			args = append(args, k)
		}
		q := `SELECT key, idx FROM idempotency WHERE source = ? AND key IN (?` + strings.Repeat(",?", n-1) + `)`
		rows, err := d.db.Query(q, args...)
		if err != nil {
			return nil, fmt.Errorf("couldn't read idempotency index: %w", err)
		}
		for rows.Next() {
			var k string
			var idx int64
			if err := rows.Scan(&k, &idx); err != nil {
				rows.Close()
				return nil, fmt.Errorf("couldn't read idempotency index: %w", err)
			}
			found[k] = uint64(idx)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("couldn't read idempotency index: %w", err)
		}
		keys = keys[n:]
	}
	return found, nil
}

// A keyState says what a request must do about one keyed event.
type keyState struct {
	// owned: this request holds the claim and must append, then call done.
	owned bool
	// found: the key already has an index (idx).
	found bool
	idx   uint64
	// wait: another request holds the claim; wait on it.
	wait *claim
	// sameAs: the key appeared earlier in this request, at this position.
	sameAs int
}

// A batch is one request's keyed events, from begin to finish.
type batch struct {
	d      *Dedup
	source string
	keys   []string // per event; "" for events without a key
	states []keyState
	epoch  uint64
	claims map[string]*claim // owned claims by key
}

// begin claims the keys of one request's events (one entry per event, ""
// for no key) and says for each what to do. finish must be called once the
// request is done, whatever happened.
func (d *Dedup) begin(source string, keys []string) (*batch, error) {
	b := &batch{d: d, source: source, keys: keys, states: make([]keyState, len(keys)), claims: map[string]*claim{}}
	b.epoch = d.epochs.begin()
	first := map[string]int{}
	var owned []string
	d.mu.Lock()
	for i, k := range keys {
		b.states[i].sameAs = -1
		if k == "" {
			continue
		}
		if j, ok := first[k]; ok {
			b.states[i].sameAs = j
			continue
		}
		first[k] = i
		if c, ok := d.pending[dedupKey{source, k}]; ok {
			b.states[i].wait = c
			continue
		}
		c := &claim{done: make(chan struct{})}
		d.pending[dedupKey{source, k}] = c
		b.claims[k] = c
		b.states[i].owned = true
		owned = append(owned, k)
	}
	d.mu.Unlock()
	if len(owned) == 0 {
		return b, nil
	}
	// Look up only after claiming: a request that finished before our claim
	// wrote its row before releasing its own claim, so it is found here.
	found, err := d.lookup(source, owned)
	if err != nil {
		b.finish(nil, err)
		return nil, err
	}
	for i, k := range keys {
		if !b.states[i].owned {
			continue
		}
		if idx, ok := found[k]; ok {
			b.states[i] = keyState{found: true, idx: idx, sameAs: -1}
			b.release(k, idx, nil)
		}
	}
	return b, nil
}

// release resolves and drops one owned claim.
func (b *batch) release(k string, idx uint64, err error) {
	c := b.claims[k]
	if c == nil {
		return
	}
	delete(b.claims, k)
	c.idx, c.err = idx, err
	b.d.mu.Lock()
	delete(b.d.pending, dedupKey{b.source, k})
	b.d.mu.Unlock()
	close(c.done)
}

// finish records the indexes the request's owned keys were appended at
// (indexes[i] for event i; ok[i] false where the append failed) and
// releases its claims. err, if not nil, fails every claim still held.
func (b *batch) finish(written map[int]uint64, err error) error {
	defer b.d.epochs.end(b.epoch)
	var rows []dedupRow
	for i, k := range b.keys {
		if !b.states[i].owned || b.claims[k] == nil {
			continue
		}
		if idx, ok := written[i]; ok && err == nil {
			rows = append(rows, dedupRow{dedupKey{b.source, k}, idx})
		}
	}
	if len(rows) > 0 {
		if werr := b.d.insert(rows, 0); werr != nil {
			// The entries are in the log; only the cache missed them. Keep
			// the watermark below them so the next start rebuilds the rows,
			// and keep answering duplicates from the claims until then.
			b.d.frozen.Store(true)
			err = werr
		}
	}
	for i, k := range b.keys {
		if !b.states[i].owned {
			continue
		}
		if idx, ok := written[i]; ok {
			b.release(k, idx, nil)
		} else {
			rerr := err
			if rerr == nil {
				rerr = errors.New("the first request with this key failed")
			}
			b.release(k, 0, rerr)
		}
	}
	return err
}

// SaveWatermark moves the watermark to the tree size read by size, once
// every request that may have appended below it has written its rows. It
// is called every second or so, and at shutdown.
func (d *Dedup) SaveWatermark(size func() (uint64, error)) error {
	// Read the size first: every entry below it was appended by a request
	// that began in the current epoch or an earlier one.
	s, err := size()
	if err != nil {
		return err
	}
	d.epochs.advance()
	if d.frozen.Load() {
		return errors.New("idempotency index missed rows; the watermark stays until the next start rebuilds them")
	}
	return d.insert(nil, s)
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
