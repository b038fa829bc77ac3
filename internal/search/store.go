package search

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver ("sqlite")
)

// A Row is what the index keeps of one event leaf.
type Row struct {
	Index    uint64
	Received time.Time
	Source   string
	Fields
}

// A Store holds the index: in SQLite beside a POSIX log, or in tables of
// the log's MySQL database.
type Store struct {
	db    *sql.DB
	mysql bool
	owned bool // db is closed with the store
}

// schemaVersion is the index's layout. An index of another version is
// thrown away and built again from the log. SQLite's is 3: its full-text
// table became contentless without contentless_delete, whose deletes
// leave a deleted row's words in the index (tombstones); the 'delete'
// command with secure-delete takes them out (EraseRows), which an erasure
// needs.
const (
	schemaVersion      = 3
	mysqlSchemaVersion = 2
)

// version is the layout this store writes.
func (s *Store) version() int {
	if s.mysql {
		return mysqlSchemaVersion
	}
	return schemaVersion
}

var sqliteSchema = []string{
	`CREATE TABLE IF NOT EXISTS search_meta (id INTEGER PRIMARY KEY CHECK (id = 1), complete_to INTEGER NOT NULL, schema_version INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS search_entries (idx INTEGER PRIMARY KEY, received INTEGER NOT NULL, source TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, resource TEXT NOT NULL, outcome TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS search_by_actor ON search_entries (actor)`,
	`CREATE INDEX IF NOT EXISTS search_by_action ON search_entries (action)`,
	`CREATE INDEX IF NOT EXISTS search_by_resource ON search_entries (resource)`,
	`CREATE INDEX IF NOT EXISTS search_by_outcome ON search_entries (outcome)`,
	`CREATE INDEX IF NOT EXISTS search_by_source ON search_entries (source)`,
	`CREATE INDEX IF NOT EXISTS search_by_received ON search_entries (received)`,
	// Contentless: the words point at indexes; the text itself stays in
	// the log. detail=none keeps no positions: queries are words, each
	// one token, never phrases. A row's words are deleted with the
	// 'delete' command and the row's text (EraseRows).
	`CREATE VIRTUAL TABLE IF NOT EXISTS search_text USING fts5(text, content='', detail=none, tokenize='unicode61 remove_diacritics 2')`,
	// A deleted row's words leave the index's pages at once, not at the
	// next merge.
	`INSERT INTO search_text (search_text, rank) VALUES ('secure-delete', 1)`,
}

var mysqlSchema = []string{
	`CREATE TABLE IF NOT EXISTS tidemark_search_meta (id INT PRIMARY KEY, complete_to BIGINT UNSIGNED NOT NULL, schema_version INT NOT NULL) ENGINE=InnoDB`,
	`CREATE TABLE IF NOT EXISTS tidemark_search_entries (
		idx BIGINT UNSIGNED PRIMARY KEY,
		received BIGINT NOT NULL,
		source VARBINARY(255) NOT NULL,
		actor VARBINARY(255) NOT NULL,
		action VARBINARY(255) NOT NULL,
		resource VARBINARY(255) NOT NULL,
		outcome VARBINARY(255) NOT NULL,
		text MEDIUMTEXT CHARACTER SET utf8mb4 NOT NULL,
		KEY search_by_actor (actor, idx),
		KEY search_by_action (action, idx),
		KEY search_by_resource (resource, idx),
		KEY search_by_outcome (outcome, idx),
		KEY search_by_source (source, idx),
		KEY search_by_received (received),
		FULLTEXT KEY search_text (text)
	) ENGINE=InnoDB`,
}

// sqlitePragmas: WAL, so queries read while the indexer writes;
// secure_delete, so that an erased entry's row is overwritten in the file
// (Erase); the index
// is derived, so a commit lost in a power cut is only built again; 64 MiB
// of page cache a connection, for the secondary indexes' random inserts.
const sqlitePragmas = "?_pragma=journal_mode(WAL)&_pragma=secure_delete(ON)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=cache_size(-65536)&_txlock=immediate"

// OpenSQLite opens (creating if need be) the index in the SQLite file at
// path.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	db, err := sql.Open("sqlite", "file:"+path+sqlitePragmas)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, owned: true}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("couldn't open the search index %s: %w", path, err)
	}
	return s, nil
}

// OpenMySQL opens (creating if need be) the index's tables in a MySQL
// database; the caller keeps db.
func OpenMySQL(ctx context.Context, db *sql.DB) (*Store, error) {
	s := &Store{db: db, mysql: true}
	if err := s.init(ctx); err != nil {
		return nil, fmt.Errorf("couldn't open the search index's tables: %w", err)
	}
	return s, nil
}

func (s *Store) t(name string) string {
	if s.mysql {
		return "tidemark_" + name
	}
	return name
}

func (s *Store) init(ctx context.Context) error {
	schema := sqliteSchema
	if s.mysql {
		schema = mysqlSchema
	}
	for _, q := range schema {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT schema_version FROM `+s.t("search_meta")+` WHERE id = 1`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		ins := `INSERT OR IGNORE INTO search_meta VALUES (1, 0, ?)`
		if s.mysql {
			ins = `INSERT IGNORE INTO tidemark_search_meta VALUES (1, 0, ?)`
		}
		_, err = s.db.ExecContext(ctx, ins, s.version())
		return err
	case err != nil:
		return err
	case v != s.version():
		return s.Reset(ctx)
	}
	return nil
}

// Close closes the store (and its database, if it opened it).
func (s *Store) Close() error {
	if s.owned {
		return s.db.Close()
	}
	return nil
}

// CompleteTo is the tree size up to which the index is complete: every
// event leaf below it has its row.
func (s *Store) CompleteTo(ctx context.Context) (uint64, error) {
	var n uint64
	err := s.db.QueryRowContext(ctx, `SELECT complete_to FROM `+s.t("search_meta")+` WHERE id = 1`).Scan(&n)
	return n, err
}

// Reset throws the index away: the indexer builds it again from the first
// entry. It is safe while indexers run.
func (s *Store) Reset(ctx context.Context) error {
	if s.mysql {
		// Rows first, then progress: an indexer that commits in between
		// wrote rows that the rebuild writes again (REPLACE).
		if _, err := s.db.ExecContext(ctx, `TRUNCATE TABLE tidemark_search_entries`); err != nil {
			return err
		}
		_, err := s.db.ExecContext(ctx, `UPDATE tidemark_search_meta SET complete_to = 0, schema_version = ? WHERE id = 1`, s.version())
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{`DROP TABLE IF EXISTS search_entries`, `DROP TABLE IF EXISTS search_text`} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	for _, q := range sqliteSchema {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE search_meta SET complete_to = 0, schema_version = ? WHERE id = 1`, schemaVersion); err != nil {
		return err
	}
	return tx.Commit()
}

// Analyze refreshes the statistics the query planner chooses indexes by:
// without them SQLite may take a filter's less selective index (for
// actor and action, the action's thousands of rows instead of the
// actor's hundred). A sampled ANALYZE (analysis_limit) costs milliseconds
// at any size. MySQL keeps its statistics itself.
func (s *Store) Analyze(ctx context.Context) error {
	if s.mysql {
		return nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range []string{`PRAGMA analysis_limit = 1000`, `ANALYZE search_entries`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// insertRows is how many rows one INSERT statement carries.
const insertRows = 256

// Commit adds the rows of the entries in [from, to) and moves the index's
// progress from from to to, in one transaction. It returns false, and
// writes nothing, if the progress is no longer from: another frontend
// indexed those entries, or the index was reset.
func (s *Store) Commit(ctx context.Context, from, to uint64, rows []Row) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE `+s.t("search_meta")+` SET complete_to = ? WHERE id = 1 AND complete_to = ?`, to, from)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, err
	}
	for len(rows) > 0 {
		n := min(len(rows), insertRows)
		if err := s.insert(ctx, tx, rows[:n]); err != nil {
			return false, err
		}
		rows = rows[n:]
	}
	return true, tx.Commit()
}

func (s *Store) insert(ctx context.Context, tx *sql.Tx, rows []Row) error {
	var q strings.Builder
	args := make([]any, 0, len(rows)*8)
	if s.mysql {
		q.WriteString(`REPLACE INTO tidemark_search_entries (idx, received, source, actor, action, resource, outcome, text) VALUES `)
	} else {
		q.WriteString(`INSERT OR REPLACE INTO search_entries (idx, received, source, actor, action, resource, outcome) VALUES `)
	}
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		args = append(args, r.Index, r.Received.UnixNano(), Cut(r.Source), Cut(r.Actor), Cut(r.Action), Cut(r.Resource), Cut(r.Outcome))
		if s.mysql {
			q.WriteString(`(?,?,?,?,?,?,?,?)`)
			args = append(args, r.Text)
		} else {
			q.WriteString(`(?,?,?,?,?,?,?)`)
		}
	}
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return err
	}
	if s.mysql {
		return nil
	}
	q.Reset()
	args = args[:0]
	q.WriteString(`INSERT INTO search_text (rowid, text) VALUES `)
	for _, r := range rows {
		if r.Text == "" {
			continue
		}
		if len(args) > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?,?)`)
		args = append(args, r.Index, r.Text)
	}
	if len(args) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, q.String(), args...)
	return err
}

// EraseRows deletes the rows and the words of the entries rows name (a
// commitment log erased them). Each row's Text must be the text it was
// indexed with (RowOf of the same event gives it): SQLite's full-text
// index finds a row's words by its text, and removes them from its pages
// (secure-delete). Rows not in the index are skipped. It does not move the
// progress. Call Flush after, so that the deleted bytes leave SQLite's
// write-ahead log too.
func (s *Store) EraseRows(ctx context.Context, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), insertRows)]
		rows = rows[len(chunk):]
		args := make([]any, len(chunk))
		for i, r := range chunk {
			args[i] = int64(r.Index)
		}
		in := `(?` + strings.Repeat(`,?`, len(chunk)-1) + `)`
		if !s.mysql {
			// Only rows still indexed: 'delete' with the words of a
			// row that is not there would damage the index.
			present := map[uint64]bool{}
			q, err := tx.QueryContext(ctx, `SELECT idx FROM search_entries WHERE idx IN `+in, args...)
			if err != nil {
				return err
			}
			for q.Next() {
				var idx int64
				if err := q.Scan(&idx); err != nil {
					q.Close()
					return err
				}
				present[uint64(idx)] = true
			}
			if err := q.Close(); err != nil {
				return err
			}
			for _, r := range chunk {
				if !present[r.Index] || r.Text == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO search_text (search_text, rowid, text) VALUES ('delete', ?, ?)`, int64(r.Index), r.Text); err != nil {
					return err
				}
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+s.t("search_entries")+` WHERE idx IN `+in, args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Erase deletes the rows left in [from, to) after EraseRows, of entries
// whose text is no longer known, and returns how many there were. On
// MySQL their text goes with them; in SQLite their words stay in the
// full-text index (matching nothing: every hit is read back from the log)
// until the index is rebuilt (`tidemark reindex`).
func (s *Store) Erase(ctx context.Context, from, to uint64) (int64, error) {
	if from >= to {
		return 0, nil
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM `+s.t("search_entries")+` WHERE idx >= ? AND idx < ?`, int64(from), int64(to))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Flush takes deleted bytes out of a SQLite index's write-ahead log: a
// checkpoint copies it into the file and truncates it. A reader in the
// middle of a query can hold the log; Flush tries again for a while.
func (s *Store) Flush(ctx context.Context) error {
	if s.mysql {
		return nil
	}
	for attempt := 0; ; attempt++ {
		var busy, frames, done int
		err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done)
		if err == nil && busy == 0 {
			return nil
		}
		if attempt == 50 {
			if err == nil {
				err = errors.New("the checkpoint of the search index's write-ahead log was blocked by readers")
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
