package log

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
)

// The idempotency index's database: a table of keys (tidemark_keys) and
// one of the frontends that hold claims on them (tidemark_frontends), in
// SQLite beside a POSIX log or in the log's MySQL database. Nothing of the index is held in memory but the claims of the
// requests in flight, so memory does not grow with the log.
//
// A row of tidemark_keys is either complete (idx set: the key's first entry
// is at idx) or a claim (idx NULL): a frontend is appending an entry under
// the key. A claim is committed before its entry is appended, so every
// keyed entry in the log has a row: complete, or claimed by the frontend
// that appended it. Claims of a frontend that died are resolved from the
// leaves (recovery.go).

// keyDB is the idempotency index's database: a SQL database (sqlKeys),
// SQLite beside a POSIX log or the log's MySQL database.
type keyDB interface {
	// migrate creates the store, and says whether it is new and must be
	// built from the log (idempotencyIndex.Build) before it answers.
	migrate(ctx context.Context) (fresh bool, err error)
	markBuilt(ctx context.Context) error
	watermark(ctx context.Context) (uint64, error)
	begin(ctx context.Context) (keyTx, error)
	heartbeat(ctx context.Context, id int64, host string) error
	deadOwners(ctx context.Context, self int64, lease time.Duration) ([]int64, error)
	claimsOf(ctx context.Context, owners []int64) ([]deadClaim, error)
	count(ctx context.Context) (int64, error)
	close() error
}

// keyTx is a transaction of the index's database: everything it writes is
// committed at once, durably, or not at all.
type keyTx interface {
	// lookup returns the rows of the key hashes: each key's own row and
	// those of its variants.
	lookup(ctx context.Context, hashes [][16]byte) (map[keyID]keyRow, error)
	insertClaims(ctx context.Context, owner int64, from uint64, claims []newClaim) (inserted int, err error)
	complete(ctx context.Context, owner int64, rows []completion) (lost int, err error)
	release(ctx context.Context, owner int64, ids []keyID) error
	resolve(ctx context.Context, rows []completion) error
	forget(ctx context.Context, owners []int64) error
	insertComplete(ctx context.Context, rows []indexRow) error
	// setWatermark records that every keyed entry below mark has its row
	// (a POSIX log's volatile claims).
	setWatermark(ctx context.Context, mark uint64) error
	Commit() error
	Rollback() error
}

// inTx runs f in a transaction of db and commits it.
func inTx(ctx context.Context, db keyDB, f func(keyTx) error) error {
	tx, err := db.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// lookupKeys reads rows outside a transaction of the caller's.
func lookupKeys(ctx context.Context, db keyDB, hashes [][16]byte) (rows map[keyID]keyRow, err error) {
	err = inTx(ctx, db, func(tx keyTx) error {
		rows, err = tx.lookup(ctx, hashes)
		return err
	})
	return rows, err
}

// A dialect holds the SQL that differs between SQLite and MySQL.
type dialect struct {
	name string
	// schema creates the tables.
	schema []string
	// insertIgnore begins an INSERT that skips rows whose key exists.
	insertIgnore string
	// now is the database's clock in milliseconds since 1970: frontends
	// judge each other's liveness by one clock, the database's.
	now string
	// upsertFrontend records a frontend's heartbeat (id, host).
	upsertFrontend string
}

var sqliteDialect = dialect{
	name: "sqlite",
	schema: []string{
		`CREATE TABLE IF NOT EXISTS tidemark_keys (
			h     BLOB NOT NULL,    -- keyHash(source, key)
			v     BLOB NOT NULL,    -- zeros for the key itself, the event's eventHash for a variant (keyID)
			ev    BLOB NOT NULL,    -- eventHash of the event logged under it
			idx   INTEGER,          -- its log index; NULL while claimed
			owner INTEGER,          -- the claiming frontend; NULL once complete
			from_size INTEGER,      -- the tree size when claimed: its entry, if any, is at or above it
			PRIMARY KEY (h, v)
		) WITHOUT ROWID`,
		`CREATE TABLE IF NOT EXISTS tidemark_frontends (
			id   INTEGER PRIMARY KEY,
			seen INTEGER NOT NULL, -- last heartbeat, ms
			host TEXT NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS tidemark_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
	},
	insertIgnore:   "INSERT OR IGNORE INTO",
	now:            "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
	upsertFrontend: "INSERT INTO tidemark_frontends (id, seen, host) VALUES (?, CAST(unixepoch('subsec') * 1000 AS INTEGER), ?) ON CONFLICT(id) DO UPDATE SET seen = excluded.seen",
}

var mysqlDialect = dialect{
	name: "mysql",
	schema: []string{
		"CREATE TABLE IF NOT EXISTS tidemark_keys (" +
			"`h` BINARY(16) NOT NULL, " +
			"`v` BINARY(16) NOT NULL, " +
			"`ev` BINARY(16) NOT NULL, " +
			"`idx` BIGINT UNSIGNED NULL, " +
			"`owner` BIGINT NULL, " +
			"`from_size` BIGINT UNSIGNED NULL, " +
			"PRIMARY KEY (`h`, `v`), " +
			"KEY `owner_claims` (`owner`)" +
			") ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS tidemark_frontends (" +
			"`id` BIGINT NOT NULL PRIMARY KEY, " +
			"`seen` BIGINT NOT NULL, " +
			"`host` VARCHAR(255) NOT NULL" +
			") ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS tidemark_meta (`name` VARCHAR(64) NOT NULL PRIMARY KEY, `value` BIGINT NOT NULL) ENGINE=InnoDB",
	},
	insertIgnore:   "INSERT IGNORE INTO",
	now:            "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
	upsertFrontend: "INSERT INTO tidemark_frontends (id, seen, host) VALUES (?, CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED), ?) ON DUPLICATE KEY UPDATE seen = VALUES(seen)",
}

// keySchemaVersion is the layout of the index's database. SQLite indexes of the
// layouts before it (idempotency_keys, held in memory) are dropped and
// rebuilt from the log, which is their record.
const keySchemaVersion = 4

// A keyRow is what the store holds for a hash.
type keyRow struct {
	ev    [16]byte
	idx   uint64
	done  bool  // idx is set: the row is complete
	owner int64 // while claimed
}

// sqlKeys is the index's database in SQL (keyDB).
type sqlKeys struct {
	db *sql.DB
	d  dialect
}

// sqlTx is a transaction of sqlKeys (keyTx).
type sqlTx struct {
	k  *sqlKeys
	tx *sql.Tx
}

func (t sqlTx) Commit() error   { return t.tx.Commit() }
func (t sqlTx) Rollback() error { return t.tx.Rollback() }

// migrate creates the tables, and says whether the index must be rebuilt
// from the whole log before it answers (a new table beside entries that
// may carry keys: an index of an older layout, or a log migrated in).
func (k *sqlKeys) migrate(ctx context.Context) (fresh bool, err error) {
	if k.d.name == "sqlite" {
		if err := k.setPageSize(ctx); err != nil {
			return false, err
		}
		// The in-memory index of earlier versions kept its rows here.
		for _, q := range []string{`DROP TABLE IF EXISTS idempotency_keys`, `DROP TABLE IF EXISTS meta`} {
			if _, err := k.db.ExecContext(ctx, q); err != nil {
				return false, err
			}
		}
	}
	for _, q := range k.d.schema {
		if _, err := k.db.ExecContext(ctx, q); err != nil {
			return false, err
		}
	}
	var v int64
	err = k.db.QueryRowContext(ctx, `SELECT value FROM tidemark_meta WHERE name = 'built'`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return true, nil
	case err != nil:
		return false, err
	case v != keySchemaVersion:
		// Another layout: built again from the log, its record.
		for _, q := range []string{`DROP TABLE IF EXISTS tidemark_keys`, `DELETE FROM tidemark_meta WHERE name IN ('built', 'indexed_to')`} {
			if _, err := k.db.ExecContext(ctx, q); err != nil {
				return false, err
			}
		}
		return k.migrate(ctx)
	}
	return false, nil
}

// sqlitePageSize is the page size of a new SQLite index. Rows are small
// (about 60 bytes) and keyed by a random hash, so a transaction of many rows
// touches most leaf pages of the table anyway: larger pages mean fewer of them
// for the same rows, so fewer WAL frames and checkpoint writes (syscalls),
// and a shallower tree. 16 KiB pages took ~25% less CPU per key than 4 KiB
// at 2 M keys (20 against 27 µs) and ~20% less at 10 M (39.5 against 50 µs;
// BenchmarkSQLiteIndexRequestPrefilled with BENCH_KEYS and BENCH_PAGE_SIZE);
// 32 KiB was no better than 16 at 2 M. The price: a transaction's WAL is
// larger (a flush at 10 M keys writes ~0.5 GB of WAL, reused, not grown).
const sqlitePageSize = 16384

// setPageSize gives a new, empty SQLite database sqlitePageSize pages. A
// database in WAL mode keeps its page size, so it is set with the journal
// in rollback mode and the empty file rewritten (VACUUM), then WAL again.
// An existing index keeps the page size it has.
func (k *sqlKeys) setPageSize(ctx context.Context) error {
	var tables, size int64
	if err := k.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&tables); err != nil {
		return err
	}
	if err := k.db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size); err != nil {
		return err
	}
	if tables > 0 || size == sqlitePageSize {
		return nil
	}
	for _, q := range []string{`PRAGMA journal_mode=DELETE`, fmt.Sprintf(`PRAGMA page_size=%d`, sqlitePageSize), `VACUUM`, `PRAGMA journal_mode=WAL`} {
		if _, err := k.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("couldn't set the page size of the new index (%s): %w", q, err)
		}
	}
	return nil
}

// markBuilt records that the index covers the whole log.
func (k *sqlKeys) markBuilt(ctx context.Context) error {
	_, err := k.db.ExecContext(ctx, k.d.insertIgnore+` tidemark_meta (name, value) VALUES ('built', ?)`, keySchemaVersion)
	return err
}

// begin starts a transaction. On MySQL it reads committed rows, not a
// snapshot: after an insert that skipped a key another frontend claimed
// meanwhile, the lookup must see that frontend's row.
func (k *sqlKeys) begin(ctx context.Context) (keyTx, error) {
	opts := (*sql.TxOptions)(nil)
	if k.d.name == "mysql" {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	tx, err := k.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return sqlTx{k, tx}, nil
}

func (k *sqlKeys) close() error { return k.db.Close() }

func (t sqlTx) setWatermark(ctx context.Context, mark uint64) error {
	_, err := t.tx.ExecContext(ctx, `REPLACE INTO tidemark_meta (name, value) VALUES ('indexed_to', ?)`, int64(mark))
	return err
}

// watermark returns the tree size below which every keyed entry has its
// row (0 when none was saved).
func (k *sqlKeys) watermark(ctx context.Context) (uint64, error) {
	var v int64
	err := k.db.QueryRowContext(ctx, `SELECT value FROM tidemark_meta WHERE name = 'indexed_to'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return uint64(v), err
}

// perStmt is how many rows one statement carries: the per-statement cost of
// database/sql and the driver, not the row, dominates one row at a time.
const perStmt = 256

// perStmt is how many rows a lookup or an insert of complete rows carries
// per statement: on SQLite, a request's 1,000 keys in one.
func (t sqlTx) perStmt() int {
	if t.k.d.name == "sqlite" {
		return 1024
	}
	return perStmt
}

// lookup returns the rows of hashes that exist.
func (t sqlTx) lookup(ctx context.Context, hashes [][16]byte) (map[keyID]keyRow, error) {
	out := make(map[keyID]keyRow, len(hashes))
	for chunk := range slices.Chunk(hashes, t.perStmt()) {
		args := make([]any, len(chunk))
		for i, h := range chunk {
			args[i] = h[:]
		}
		rows, err := t.tx.QueryContext(ctx, `SELECT h, v, ev, idx, owner FROM tidemark_keys WHERE h IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h, v, ev []byte
			var idx, owner sql.NullInt64
			if err := rows.Scan(&h, &v, &ev, &idx, &owner); err != nil {
				rows.Close()
				return nil, err
			}
			var id keyID
			var r keyRow
			if len(h) != 16 || len(v) != 16 || copy(r.ev[:], ev) != 16 {
				rows.Close()
				return nil, fmt.Errorf("the key store holds a damaged row (%d, %d and %d bytes of hashes)", len(h), len(v), len(ev))
			}
			copy(id[:16], h)
			copy(id[16:], v)
			r.idx, r.done, r.owner = uint64(idx.Int64), idx.Valid, owner.Int64
			out[id] = r
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// A newClaim is a claim to insert.
type newClaim struct {
	id keyID
	ev [16]byte
}

// insertClaims inserts claims by owner, skipping hashes that have a row.
// Rows go in hash order, so that two frontends claiming overlapping keys
// lock them in the same order.
// It returns how many it inserted: all of them, unless another frontend
// claimed some since they were looked up.
func (t sqlTx) insertClaims(ctx context.Context, owner int64, from uint64, claims []newClaim) (inserted int, err error) {
	slices.SortFunc(claims, func(a, b newClaim) int { return bytes.Compare(a.id[:], b.id[:]) })
	for chunk := range slices.Chunk(claims, perStmt) {
		args := make([]any, 0, 5*len(chunk))
		for _, c := range chunk {
			args = append(args, c.id[:16], c.id[16:], c.ev[:], owner, int64(from))
		}
		res, err := t.tx.ExecContext(ctx, t.k.d.insertIgnore+` tidemark_keys (h, v, ev, owner, from_size) VALUES (?, ?, ?, ?, ?)`+
			strings.Repeat(", (?, ?, ?, ?, ?)", len(chunk)-1), args...)
		if err != nil {
			return inserted, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return inserted, err
		}
		inserted += int(n)
	}
	return inserted, nil
}

// A completion sets the index of a claimed key.
type completion struct {
	id  keyID
	idx uint64
	ev  [16]byte
}

// complete records the indexes of claimed keys. Only owner's claims are
// completed: a claim that recovery took over (the owner was thought dead)
// is left as recovery set it, and counted in lost.
func (t sqlTx) complete(ctx context.Context, owner int64, rows []completion) (lost int, err error) {
	slices.SortFunc(rows, func(a, b completion) int { return bytes.Compare(a.id[:], b.id[:]) })
	for chunk := range slices.Chunk(rows, perStmt) {
		args := make([]any, 0, 4*len(chunk)+1)
		for _, r := range chunk {
			args = append(args, r.id[:16], r.id[16:], r.ev[:], int64(r.idx))
		}
		args = append(args, owner)
		// MySQL: a join with the rows as a derived table, one statement.
		// SQLite: an upsert, which finds each row by its key once.
		q := `UPDATE tidemark_keys k JOIN (SELECT CAST(? AS BINARY(16)) AS h, CAST(? AS BINARY(16)) AS v, CAST(? AS BINARY(16)) AS ev, ? AS idx` +
			strings.Repeat(" UNION ALL SELECT CAST(? AS BINARY(16)), CAST(? AS BINARY(16)), CAST(? AS BINARY(16)), ?", len(chunk)-1) +
			`) c ON k.h = c.h AND k.v = c.v SET k.idx = c.idx, k.owner = NULL, k.from_size = NULL WHERE k.owner = ? AND k.idx IS NULL`
		if t.k.d.name == "sqlite" {
			q = `INSERT INTO tidemark_keys (h, v, ev, idx) VALUES (?, ?, ?, ?)` + strings.Repeat(", (?, ?, ?, ?)", len(chunk)-1) +
				` ON CONFLICT(h, v) DO UPDATE SET idx = excluded.idx, owner = NULL, from_size = NULL WHERE tidemark_keys.owner = ? AND tidemark_keys.idx IS NULL`
		}
		res, err := t.tx.ExecContext(ctx, q, args...)
		if err != nil {
			return lost, err
		}
		if n, err := res.RowsAffected(); err == nil {
			lost += len(chunk) - int(n)
		}
	}
	return lost, nil
}

// release deletes owner's claims on hashes whose entries were not appended.
func (t sqlTx) release(ctx context.Context, owner int64, ids []keyID) error {
	for chunk := range slices.Chunk(ids, perStmt) {
		args := make([]any, 0, 2*len(chunk)+1)
		args = append(args, owner)
		for _, id := range chunk {
			args = append(args, id[:16], id[16:])
		}
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM tidemark_keys WHERE owner = ? AND idx IS NULL AND (h, v) IN ((?, ?)`+strings.Repeat(", (?, ?)", len(chunk)-1)+`)`, args...); err != nil {
			return err
		}
	}
	return nil
}

// heartbeat records that frontend id is alive, by the database's clock.
func (k *sqlKeys) heartbeat(ctx context.Context, id int64, host string) error {
	_, err := k.db.ExecContext(ctx, k.d.upsertFrontend, id, host)
	return err
}

// deadOwners returns the owners of claims that are not alive: no heartbeat
// within lease, by the database's clock, or no row at all. self is never
// dead.
func (k *sqlKeys) deadOwners(ctx context.Context, self int64, lease time.Duration) ([]int64, error) {
	rows, err := k.db.QueryContext(ctx, `SELECT DISTINCT k.owner FROM tidemark_keys k LEFT JOIN tidemark_frontends f ON f.id = k.owner
		WHERE k.idx IS NULL AND k.owner <> ? AND (f.id IS NULL OR f.seen < `+k.d.now+` - ?)`, self, lease.Milliseconds())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var o int64
		if err := rows.Scan(&o); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// A deadClaim is a claim of a frontend that died.
type deadClaim struct {
	id    keyID
	ev    [16]byte
	owner int64
	from  uint64
}

// claimsOf returns the open claims of owners.
func (k *sqlKeys) claimsOf(ctx context.Context, owners []int64) ([]deadClaim, error) {
	var out []deadClaim
	for _, o := range owners {
		rows, err := k.db.QueryContext(ctx, `SELECT h, v, ev, from_size FROM tidemark_keys WHERE owner = ? AND idx IS NULL`, o)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h, v, ev []byte
			var from int64
			if err := rows.Scan(&h, &v, &ev, &from); err != nil {
				rows.Close()
				return nil, err
			}
			c := deadClaim{owner: o, from: uint64(from)}
			copy(c.id[:16], h)
			copy(c.id[16:], v)
			copy(c.ev[:], ev)
			out = append(out, c)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// resolve completes a dead owner's claim at idx, whoever owned it.
func (t sqlTx) resolve(ctx context.Context, rows []completion) error {
	for _, r := range rows {
		if _, err := t.tx.ExecContext(ctx, `UPDATE tidemark_keys SET idx = ?, owner = NULL, from_size = NULL WHERE h = ? AND v = ? AND idx IS NULL`, int64(r.idx), r.id[:16], r.id[16:]); err != nil {
			return err
		}
	}
	return nil
}

// forget deletes the open claims of owners (after recovery found their
// appended entries) and their frontend rows.
func (t sqlTx) forget(ctx context.Context, owners []int64) error {
	for _, o := range owners {
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM tidemark_keys WHERE owner = ? AND idx IS NULL`, o); err != nil {
			return err
		}
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM tidemark_frontends WHERE id = ?`, o); err != nil {
			return err
		}
	}
	return nil
}

// insertComplete adds complete rows (a rebuild from the leaves), keeping
// rows that exist.
func (t sqlTx) insertComplete(ctx context.Context, rows []indexRow) error {
	for chunk := range slices.Chunk(rows, t.perStmt()) {
		args := make([]any, 0, 4*len(chunk))
		for _, r := range chunk {
			args = append(args, r.id[:16], r.id[16:], r.ev[:], int64(r.idx))
		}
		if _, err := t.tx.ExecContext(ctx, t.k.d.insertIgnore+` tidemark_keys (h, v, ev, idx) VALUES (?, ?, ?, ?)`+strings.Repeat(", (?, ?, ?, ?)", len(chunk)-1), args...); err != nil {
			return err
		}
	}
	return nil
}

// count returns the number of complete keys.
func (k *sqlKeys) count(ctx context.Context) (int64, error) {
	var n int64
	err := k.db.QueryRowContext(ctx, `SELECT count(*) FROM tidemark_keys WHERE idx IS NOT NULL`).Scan(&n)
	return n, err
}

// retryable says whether a transaction failed for a reason that another
// attempt may not meet: a MySQL deadlock or lock wait timeout, or SQLite's
// busy database.
func retryable(err error) bool {
	var me *mysqldriver.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1213 || me.Number == 1205 // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
	}
	return sqliteCode(err) == 5 || sqliteCode(err) == 6 // SQLITE_BUSY, SQLITE_LOCKED
}
