package log

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
)

// The key store is where the idempotency index lives: a table of keys
// (tidemark_keys) and one of the frontends that hold claims on them
// (tidemark_frontends), in SQLite beside a POSIX log or in the log's MySQL
// database. Nothing of the index is held in memory but the claims of the
// requests in flight, so memory does not grow with the log.
//
// A row of tidemark_keys is either complete (idx set: the key's first entry
// is at idx) or a claim (idx NULL): a frontend is appending an entry under
// the key. A claim is committed before its entry is appended, so every
// keyed entry in the log has a row: complete, or claimed by the frontend
// that appended it. Claims of a frontend that died are resolved from the
// leaves (recovery.go).

// keyDB is a key store: SQL (sqlKeys, SQLite or MySQL) or Pebble
// (pebbleKeys, beside a POSIX log).
type keyDB interface {
	// migrate creates the store, and says whether it is new and must be
	// built from the log (Dedup.Build) before it answers.
	migrate(ctx context.Context) (fresh bool, err error)
	markBuilt(ctx context.Context) error
	begin(ctx context.Context) (keyTx, error)
	heartbeat(ctx context.Context, id int64, host string) error
	deadOwners(ctx context.Context, self int64, lease time.Duration) ([]int64, error)
	claimsOf(ctx context.Context, owners []int64) ([]deadClaim, error)
	count(ctx context.Context) (int64, error)
	close() error
}

// keyTx is a transaction of a key store: everything it writes is
// committed at once, durably, or not at all.
type keyTx interface {
	lookup(ctx context.Context, hashes [][16]byte) (map[[16]byte]keyRow, error)
	insertClaims(ctx context.Context, owner int64, from uint64, claims []newClaim) (inserted int, err error)
	complete(ctx context.Context, owner int64, rows []completion) (lost int, err error)
	release(ctx context.Context, owner int64, hashes [][16]byte) error
	resolve(ctx context.Context, rows []completion) error
	forget(ctx context.Context, owners []int64) error
	insertComplete(ctx context.Context, rows []dedupRow) error
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
func lookupKeys(ctx context.Context, db keyDB, hashes [][16]byte) (rows map[[16]byte]keyRow, err error) {
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
			h     BLOB PRIMARY KEY, -- keyHash(source, key), or variantHash for a reused key
			ev    BLOB NOT NULL,    -- eventHash of the event first logged under it
			idx   INTEGER,          -- its log index; NULL while claimed
			owner INTEGER,          -- the claiming frontend; NULL once complete
			from_size INTEGER       -- the tree size when claimed: its entry, if any, is at or above it
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
			"`h` BINARY(16) NOT NULL PRIMARY KEY, " +
			"`ev` BINARY(16) NOT NULL, " +
			"`idx` BIGINT UNSIGNED NULL, " +
			"`owner` BIGINT NULL, " +
			"`from_size` BIGINT UNSIGNED NULL, " +
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

// keySchemaVersion is the layout of the key store. SQLite indexes of the
// layouts before it (idempotency_keys, held in memory) are dropped and
// rebuilt from the log, which is their record.
const keySchemaVersion = 3

// A keyRow is what the store holds for a hash.
type keyRow struct {
	ev    [16]byte
	idx   uint64
	done  bool  // idx is set: the row is complete
	owner int64 // while claimed
}

// sqlKeys is the key store in a SQL database (keyDB).
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
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	return false, err
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

// perStmt is how many rows one statement carries: the per-statement cost of
// database/sql and the driver, not the row, dominates one row at a time.
const perStmt = 256

// lookup returns the rows of hashes that exist.
func (t sqlTx) lookup(ctx context.Context, hashes [][16]byte) (map[[16]byte]keyRow, error) {
	out := make(map[[16]byte]keyRow, len(hashes))
	for chunk := range slices.Chunk(hashes, perStmt) {
		args := make([]any, len(chunk))
		for i, h := range chunk {
			args[i] = h[:]
		}
		rows, err := t.tx.QueryContext(ctx, `SELECT h, ev, idx, owner FROM tidemark_keys WHERE h IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h, ev []byte
			var idx, owner sql.NullInt64
			if err := rows.Scan(&h, &ev, &idx, &owner); err != nil {
				rows.Close()
				return nil, err
			}
			var key [16]byte
			var r keyRow
			if copy(key[:], h) != 16 || copy(r.ev[:], ev) != 16 {
				rows.Close()
				return nil, fmt.Errorf("the key store holds a row with a %d-byte key hash and a %d-byte event hash", len(h), len(ev))
			}
			r.idx, r.done, r.owner = uint64(idx.Int64), idx.Valid, owner.Int64
			out[key] = r
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// A newClaim is a claim to insert.
type newClaim struct {
	h  [16]byte
	ev [16]byte
}

// insertClaims inserts claims by owner, skipping hashes that have a row.
// Rows go in hash order, so that two frontends claiming overlapping keys
// lock them in the same order.
// It returns how many it inserted: all of them, unless another frontend
// claimed some since they were looked up.
func (t sqlTx) insertClaims(ctx context.Context, owner int64, from uint64, claims []newClaim) (inserted int, err error) {
	slices.SortFunc(claims, func(a, b newClaim) int { return strings.Compare(string(a.h[:]), string(b.h[:])) })
	for chunk := range slices.Chunk(claims, perStmt) {
		args := make([]any, 0, 4*len(chunk))
		for _, c := range chunk {
			args = append(args, c.h[:], c.ev[:], owner, int64(from))
		}
		res, err := t.tx.ExecContext(ctx, t.k.d.insertIgnore+` tidemark_keys (h, ev, owner, from_size) VALUES (?, ?, ?, ?)`+
			strings.Repeat(", (?, ?, ?, ?)", len(chunk)-1), args...)
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
	h   [16]byte
	idx uint64
	ev  [16]byte
}

// complete records the indexes of claimed keys. Only owner's claims are
// completed: a claim that recovery took over (the owner was thought dead)
// is left as recovery set it, and counted in lost.
func (t sqlTx) complete(ctx context.Context, owner int64, rows []completion) (lost int, err error) {
	slices.SortFunc(rows, func(a, b completion) int { return strings.Compare(string(a.h[:]), string(b.h[:])) })
	if t.k.d.name == "sqlite" {
		// An upsert finds each row by its key once; the CASE below costs
		// SQLite a comparison per branch per row.
		for chunk := range slices.Chunk(rows, perStmt) {
			args := make([]any, 0, 2*len(chunk)+1)
			for _, r := range chunk {
				args = append(args, r.h[:], r.ev[:], int64(r.idx))
			}
			args = append(args, owner)
			res, err := t.tx.ExecContext(ctx, `INSERT INTO tidemark_keys (h, ev, idx) VALUES (?, ?, ?)`+strings.Repeat(", (?, ?, ?)", len(chunk)-1)+
				` ON CONFLICT(h) DO UPDATE SET idx = excluded.idx, owner = NULL, from_size = NULL WHERE tidemark_keys.owner = ? AND tidemark_keys.idx IS NULL`, args...)
			if err != nil {
				return lost, err
			}
			if n, err := res.RowsAffected(); err == nil {
				lost += len(chunk) - int(n)
			}
		}
		return lost, nil
	}
	// One UPDATE with a CASE per chunk: rows are found by primary key.
	for chunk := range slices.Chunk(rows, perStmt) {
		var sb strings.Builder
		args := make([]any, 0, 3*len(chunk)+1)
		sb.WriteString(`UPDATE tidemark_keys SET idx = CASE h`)
		for _, r := range chunk {
			sb.WriteString(` WHEN ? THEN ?`)
			args = append(args, r.h[:], int64(r.idx))
		}
		sb.WriteString(` END, owner = NULL, from_size = NULL WHERE owner = ? AND idx IS NULL AND h IN (?` + strings.Repeat(", ?", len(chunk)-1) + `)`)
		args = append(args, owner)
		for _, r := range chunk {
			args = append(args, r.h[:])
		}
		res, err := t.tx.ExecContext(ctx, sb.String(), args...)
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
func (t sqlTx) release(ctx context.Context, owner int64, hashes [][16]byte) error {
	for chunk := range slices.Chunk(hashes, perStmt) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, owner)
		for _, h := range chunk {
			args = append(args, h[:])
		}
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM tidemark_keys WHERE owner = ? AND idx IS NULL AND h IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...); err != nil {
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
	h, ev [16]byte
	owner int64
	from  uint64
}

// claimsOf returns the open claims of owners.
func (k *sqlKeys) claimsOf(ctx context.Context, owners []int64) ([]deadClaim, error) {
	var out []deadClaim
	for _, o := range owners {
		rows, err := k.db.QueryContext(ctx, `SELECT h, ev, from_size FROM tidemark_keys WHERE owner = ? AND idx IS NULL`, o)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h, ev []byte
			var from int64
			if err := rows.Scan(&h, &ev, &from); err != nil {
				rows.Close()
				return nil, err
			}
			c := deadClaim{owner: o, from: uint64(from)}
			copy(c.h[:], h)
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
		if _, err := t.tx.ExecContext(ctx, `UPDATE tidemark_keys SET idx = ?, owner = NULL, from_size = NULL WHERE h = ? AND idx IS NULL`, int64(r.idx), r.h[:]); err != nil {
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
func (t sqlTx) insertComplete(ctx context.Context, rows []dedupRow) error {
	for chunk := range slices.Chunk(rows, perStmt) {
		args := make([]any, 0, 3*len(chunk))
		for _, r := range chunk {
			args = append(args, r.h[:], r.ev[:], int64(r.idx))
		}
		if _, err := t.tx.ExecContext(ctx, t.k.d.insertIgnore+` tidemark_keys (h, ev, idx) VALUES (?, ?, ?)`+strings.Repeat(", (?, ?, ?)", len(chunk)-1), args...); err != nil {
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
