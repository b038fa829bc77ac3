package log

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The payload store holds what a commitment log's leaves commit to: for
// each commitment leaf, the salt and the event leaf E (see leafmode.go).
// It is SQLite (payloadsFile, in the state directory) beside a POSIX log,
// and the table tidemark_payloads in the log's MySQL database otherwise.
//
// A row is keyed by (received_ns, commitment), the leaf's public members,
// so that inserts go at the end of the table and a leaf read from the log
// finds its row without knowing its index. Rows are written, durably and
// grouped across requests (put), before their commitment leaves are
// appended: a crash in between leaves a row no leaf references, never a
// leaf without its row. Erasure deletes rows (erase.go); SQLite's
// secure_delete overwrites the freed bytes, and a WAL checkpoint (flush)
// takes them out of the write-ahead log.
//
// The store also keeps two marks of its own (tidemark_payload_meta):
// erasures_applied_to, below which every erasure leaf has been applied,
// and retention_from, below which retention has erased every entry.

// payloadsFile is the payload store of a POSIX log, in stateDir.
const payloadsFile = "payloads.db"

// payloadKey is how a commitment leaf finds its row.
type payloadKey struct {
	receivedNS int64
	commitment [32]byte
}

// A payload is one row: what the commitment leaf of key commits to.
type payload struct {
	key  payloadKey
	salt []byte
	leaf []byte // the event leaf E
}

// payloadStore is the payload store's database.
type payloadStore struct {
	db    *sql.DB
	mysql bool
	owned bool   // db is closed with the store
	path  string // the SQLite file

	puts chan *payloadPut
	done chan struct{}
	// putMu guards closed: put sends on puts only while it is open.
	putMu  sync.RWMutex
	closed bool

	mu     sync.Mutex // serialises erasures in this process (lock)
	lockID string     // MySQL: the GET_LOCK name of this log's erasures

	onGet atomic.Pointer[func(keys int)] // tests: called by get with the keys it reads
}

// payloadPut is one request's rows on their way to the database.
type payloadPut struct {
	rows []payload
	err  chan error
}

// payloadPragmas: WAL with full syncs (a row must be durable before its
// leaf is appended), and secure_delete, so that an erased row's bytes are
// overwritten in the file, not left in a free page.
const payloadPragmas = "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=secure_delete(ON)&_pragma=busy_timeout(10000)&_txlock=immediate"

var payloadSQLiteSchema = []string{
	`CREATE TABLE IF NOT EXISTS tidemark_payloads (
		received_ns INTEGER NOT NULL,
		commitment  BLOB NOT NULL,
		salt        BLOB NOT NULL,
		leaf        BLOB NOT NULL,
		PRIMARY KEY (received_ns, commitment)
	)`,
	`CREATE TABLE IF NOT EXISTS tidemark_payload_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
}

var payloadMySQLSchema = []string{
	"CREATE TABLE IF NOT EXISTS tidemark_payloads (" +
		"`received_ns` BIGINT NOT NULL, " +
		"`commitment` BINARY(32) NOT NULL, " +
		"`salt` BINARY(32) NOT NULL, " +
		"`leaf` MEDIUMBLOB NOT NULL, " +
		"PRIMARY KEY (`received_ns`, `commitment`)" +
		") ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS tidemark_payload_meta (`name` VARCHAR(64) NOT NULL PRIMARY KEY, `value` BIGINT NOT NULL) ENGINE=InnoDB",
}

// openSQLitePayloads opens (creating it) the payload store at path.
func openSQLitePayloads(ctx context.Context, path string) (*payloadStore, error) {
	db, err := sql.Open("sqlite", "file:"+path+payloadPragmas)
	if err != nil {
		return nil, err
	}
	p := &payloadStore{db: db, owned: true, path: path}
	if err := p.init(ctx, payloadSQLiteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("couldn't open the payload store %s: %w%s", path, err, sqliteAdvice(err))
	}
	return p, nil
}

// openMySQLPayloads opens (creating it) the payload store in the log's
// MySQL database; the caller keeps db.
func openMySQLPayloads(ctx context.Context, db *sql.DB) (*payloadStore, error) {
	p := &payloadStore{db: db, mysql: true}
	var name string
	if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name); err != nil {
		return nil, fmt.Errorf("couldn't read the database's name: %w", err)
	}
	// GET_LOCK names are the server's, not the database's: one per log.
	h := sha256.Sum256([]byte(name))
	p.lockID = "tidemark_erasure_" + hex.EncodeToString(h[:12])
	if err := p.init(ctx, payloadMySQLSchema); err != nil {
		return nil, fmt.Errorf("couldn't open the payload store's table tidemark_payloads: %w", err)
	}
	return p, nil
}

func (p *payloadStore) init(ctx context.Context, schema []string) error {
	for _, q := range schema {
		if _, err := p.db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	p.puts = make(chan *payloadPut, 1024)
	p.done = make(chan struct{})
	go p.writer()
	return nil
}

// close stops the writer and closes the database if the store opened it.
func (p *payloadStore) close() error {
	p.putMu.Lock()
	p.closed = true
	close(p.puts)
	p.putMu.Unlock()
	<-p.done
	if p.owned {
		return p.db.Close()
	}
	return nil
}

// put writes rows durably, in one transaction with the rows of whatever
// other requests are waiting (group commit), and returns once they are
// committed.
func (p *payloadStore) put(ctx context.Context, rows []payload) error {
	if len(rows) == 0 {
		return nil
	}
	op := &payloadPut{rows: rows, err: make(chan error, 1)}
	p.putMu.RLock()
	if p.closed {
		p.putMu.RUnlock()
		return errLogStopping
	}
	select {
	case p.puts <- op:
	case <-ctx.Done():
		p.putMu.RUnlock()
		return ctx.Err()
	}
	p.putMu.RUnlock()
	// Once queued the rows are written whatever the request does: wait.
	return <-op.err
}

// maxPutRows bounds the rows of one group commit.
const maxPutRows = 16 << 10

// writer commits the queued puts, as many as are waiting at once.
func (p *payloadStore) writer() {
	defer close(p.done)
	for op := range p.puts {
		group := []*payloadPut{op}
		n := len(op.rows)
	gather:
		for n < maxPutRows {
			select {
			case more, ok := <-p.puts:
				if !ok {
					break gather
				}
				group = append(group, more)
				n += len(more.rows)
			default:
				break gather
			}
		}
		err := p.insert(group)
		for _, op := range group {
			op.err <- err
		}
	}
}

func (p *payloadStore) insert(group []*payloadPut) error {
	ctx := context.Background()
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var all []payload
	for _, op := range group {
		all = append(all, op.rows...)
	}
	for len(all) > 0 {
		// perStmt rows, or fewer past maxStmtBytes: a statement must fit
		// MySQL's max_allowed_packet (16 MiB by default on MariaDB), and
		// 256 leaves of 64 KiB would not.
		n, size := 0, 0
		for n < len(all) && n < perStmt && (n == 0 || size+len(all[n].leaf) <= maxStmtBytes) {
			size += len(all[n].leaf) + 64
			n++
		}
		chunk := all[:n]
		all = all[n:]
		args := make([]any, 0, 4*len(chunk))
		for _, r := range chunk {
			args = append(args, r.key.receivedNS, r.key.commitment[:], r.salt, r.leaf)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tidemark_payloads (received_ns, commitment, salt, leaf) VALUES (?, ?, ?, ?)`+
			strings.Repeat(", (?, ?, ?, ?)", len(chunk)-1), args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// maxStmtBytes bounds the event leaves one INSERT carries.
const maxStmtBytes = 4 << 20

// get returns the rows of keys that exist.
func (p *payloadStore) get(ctx context.Context, keys []payloadKey) (map[payloadKey]payload, error) {
	if f := p.onGet.Load(); f != nil {
		(*f)(len(keys))
	}
	out := make(map[payloadKey]payload, len(keys))
	for chunk := range slices.Chunk(keys, perStmt) {
		args := make([]any, 0, 2*len(chunk))
		for _, k := range chunk {
			args = append(args, k.receivedNS, k.commitment[:])
		}
		rows, err := p.db.QueryContext(ctx, `SELECT received_ns, commitment, salt, leaf FROM tidemark_payloads WHERE (received_ns, commitment) IN ((?, ?)`+
			strings.Repeat(", (?, ?)", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r payload
			var c []byte
			if err := rows.Scan(&r.key.receivedNS, &c, &r.salt, &r.leaf); err != nil {
				rows.Close()
				return nil, err
			}
			if copy(r.key.commitment[:], c) != 32 {
				rows.Close()
				return nil, fmt.Errorf("the payload store holds a damaged row (a commitment of %d bytes)", len(c))
			}
			out[r.key] = r
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// delete deletes the rows of keys, in one transaction, and returns how
// many there were.
func (p *payloadStore) delete(ctx context.Context, keys []payloadKey) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var n int64
	for chunk := range slices.Chunk(keys, perStmt) {
		args := make([]any, 0, 2*len(chunk))
		for _, k := range chunk {
			args = append(args, k.receivedNS, k.commitment[:])
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM tidemark_payloads WHERE (received_ns, commitment) IN ((?, ?)`+
			strings.Repeat(", (?, ?)", len(chunk)-1)+`)`, args...)
		if err != nil {
			return 0, err
		}
		if d, err := res.RowsAffected(); err == nil {
			n += d
		}
	}
	return n, tx.Commit()
}

// keysBefore returns the keys of at most limit rows received before t,
// the oldest first.
func (p *payloadStore) keysBefore(ctx context.Context, t time.Time, limit int) ([]payloadKey, error) {
	rows, err := p.db.QueryContext(ctx, `SELECT received_ns, commitment FROM tidemark_payloads WHERE received_ns < ? ORDER BY received_ns LIMIT ?`, t.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []payloadKey
	for rows.Next() {
		var k payloadKey
		var c []byte
		if err := rows.Scan(&k.receivedNS, &c); err != nil {
			return nil, err
		}
		if copy(k.commitment[:], c) != 32 {
			return nil, fmt.Errorf("the payload store holds a damaged row (a commitment of %d bytes)", len(c))
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// flush takes deleted bytes out of SQLite's write-ahead log: a
// checkpoint copies the WAL into the file (where secure_delete has zeroed
// the freed cells) and truncates it. A reader in the middle of a query
// can hold the WAL; flush tries again for a while. MySQL: nothing to do.
func (p *payloadStore) flush(ctx context.Context) error {
	if p.mysql {
		return nil
	}
	return walTruncate(ctx, p.db, "the payload store")
}

// walTruncate runs PRAGMA wal_checkpoint(TRUNCATE) until it completes.
func walTruncate(ctx context.Context, db *sql.DB, what string) error {
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		var busy, logFrames, done int
		err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done)
		if err == nil && busy == 0 {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("the checkpoint of %s's write-ahead log was blocked by a reader", what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return last
}

// mark reads one of the store's marks (0 when unset).
func (p *payloadStore) mark(ctx context.Context, name string) (uint64, error) {
	var v int64
	err := p.db.QueryRowContext(ctx, `SELECT value FROM tidemark_payload_meta WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return uint64(v), err
}

// setMark raises one of the store's marks to v (never lowers it).
func (p *payloadStore) setMark(ctx context.Context, name string, v uint64) error {
	q := `INSERT INTO tidemark_payload_meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)`
	if p.mysql {
		q = "INSERT INTO tidemark_payload_meta (`name`, `value`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `value` = GREATEST(`value`, VALUES(`value`))"
	}
	_, err := p.db.ExecContext(ctx, q, name, int64(v))
	return err
}

// Marks of the payload store.
const (
	markErasuresApplied = "erasures_applied_to"
	markRetentionFrom   = "retention_from"
)

// errLockBusy: another frontend holds the erasure lock.
var errLockBusy = errors.New("another frontend is erasing")

// lock serialises erasures (POST /v1/erase, retention, the repair of
// erasures at start): in this process, and on MySQL across frontends with
// GET_LOCK. It waits up to wait for the lock, then returns errLockBusy.
func (p *payloadStore) lock(ctx context.Context, wait time.Duration) (unlock func(), err error) {
	p.mu.Lock()
	if !p.mysql {
		return p.mu.Unlock, nil
	}
	conn, err := p.db.Conn(ctx)
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, p.lockID, int(wait.Seconds())).Scan(&got); err != nil {
		conn.Close()
		p.mu.Unlock()
		return nil, err
	}
	if got.Int64 != 1 {
		conn.Close()
		p.mu.Unlock()
		return nil, errLockBusy
	}
	return func() {
		_, _ = conn.ExecContext(context.Background(), `SELECT RELEASE_LOCK(?)`, p.lockID)
		conn.Close()
		p.mu.Unlock()
	}, nil
}

// count returns the number of rows (for tests and status).
func (p *payloadStore) count(ctx context.Context) (int64, error) {
	var n int64
	err := p.db.QueryRowContext(ctx, `SELECT count(*) FROM tidemark_payloads`).Scan(&n)
	return n, err
}
