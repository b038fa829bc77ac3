package log

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A log writes one kind of leaf for its events, chosen when it is created
// and recorded with it (Config.Leaves):
//
//   - event (the default): each leaf holds its event
//     ({"event":…,"v":1}, checkpoint.Leaf). Anyone who may read the entry
//     bundles reads the events; nothing can ever be removed from them.
//   - commitment: each leaf holds a salted hash of the event leaf the log
//     would have written ({"commitment":…,"v":2}, see
//     checkpoint.CommitmentLeaf); the event and its salt live in the payload
//     store (payloads.go) and can be erased (erase.go) while every proof
//     stays valid.
//
// The mode is recorded on the first start (POSIX: the file leaves in the
// state directory; MySQL: a row of tidemark_settings) and a start with
// the other mode is refused: a log of event leaves cannot be made to
// forget, and a log of commitments read as one of events would answer
// nothing. A log created before the record existed is an event log.

// Leaf modes.
const (
	LeavesEvent      = "event"
	LeavesCommitment = "commitment"
)

// leavesFile records a POSIX log's leaf mode, in stateDir.
const leavesFile = "leaves"

// checkLeafMode records the log's leaf mode on its first start and refuses
// a start with another mode. size is the integrated tree size: a log with
// entries and no record was created before the record existed, with event
// leaves.
func (s *Server) checkLeafMode(ctx context.Context, size uint64) error {
	want := s.cfg.Leaves
	var have string
	var err error
	if s.backend.db != nil {
		have, err = mysqlLeafMode(ctx, s.backend.db, want, size)
	} else {
		have, err = fileLeafMode(filepath.Join(s.cfg.Dir, stateDir, leavesFile), want, size)
	}
	if err != nil {
		return fmt.Errorf("couldn't read or record the log's leaf mode: %w", err)
	}
	if have != want {
		return fmt.Errorf("this log was created with --leaves %s, and a log keeps its leaf mode for life: start it with --leaves %s (or start a new log, in another --data or database, for --leaves %s)", have, have, want)
	}
	return nil
}

// fileLeafMode reads the mode recorded at path, recording want first when
// there is none (or "event" for a log that has entries already).
func fileLeafMode(path, want string, size uint64) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		mode := strings.TrimSpace(string(b))
		if mode != LeavesEvent && mode != LeavesCommitment {
			return "", fmt.Errorf("%s holds %q, not %q or %q: restore it", path, mode, LeavesEvent, LeavesCommitment)
		}
		return mode, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	mode := want
	if size > 0 {
		mode = LeavesEvent
	}
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, []byte(mode+"\n")); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return mode, syncDir(filepath.Dir(path))
}

// writeFileSync writes b to path and syncs it.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir syncs a directory, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// mysqlLeafMode is fileLeafMode in the log's MySQL database. Frontends that
// start at once agree: the first row inserted wins.
func mysqlLeafMode(ctx context.Context, db *sql.DB, want string, size uint64) (string, error) {
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS tidemark_settings (`name` VARCHAR(64) NOT NULL PRIMARY KEY, `value` VARCHAR(255) NOT NULL) ENGINE=InnoDB"); err != nil {
		return "", err
	}
	mode := want
	if size > 0 {
		mode = LeavesEvent
	}
	if _, err := db.ExecContext(ctx, "INSERT IGNORE INTO tidemark_settings (`name`, `value`) VALUES ('leaves', ?)", mode); err != nil {
		return "", err
	}
	var have string
	if err := db.QueryRowContext(ctx, "SELECT `value` FROM tidemark_settings WHERE `name` = 'leaves'").Scan(&have); err != nil {
		return "", err
	}
	if have != LeavesEvent && have != LeavesCommitment {
		return "", fmt.Errorf("tidemark_settings holds leaves = %q, not %q or %q: restore it", have, LeavesEvent, LeavesCommitment)
	}
	return have, nil
}

// checkErasure checks the settings of commitment logs.
func (c *Config) checkErasure() error {
	switch c.Leaves {
	case LeavesEvent, LeavesCommitment:
	default:
		return fmt.Errorf("--leaves %q: use %s (each leaf holds its event) or %s (each leaf commits to its event, which can be erased)", c.Leaves, LeavesEvent, LeavesCommitment)
	}
	if c.Retention < 0 {
		return errors.New("--retention must not be negative (0 keeps every event)")
	}
	if c.Retention > 0 && c.Leaves != LeavesCommitment {
		return errors.New("--retention erases events, which only a log created with --leaves commitment can do: a log of event leaves keeps every event for life")
	}
	if c.AdminTokens != nil && c.AdminTokens.Has(RetentionSource) {
		return fmt.Errorf("--admin-tokens names a token %q: that name is the source of retention's erasures; rename the token", RetentionSource)
	}
	return nil
}

// openPayloads records (or checks) the log's leaf mode and, in a
// commitment log, opens the payload store.
func (s *Server) openPayloads() error {
	size, err := s.integratedSize()
	if err != nil {
		return fmt.Errorf("couldn't read the tree size: %w", err)
	}
	if err := s.checkLeafMode(s.ctx, size); err != nil {
		return err
	}
	if s.cfg.Leaves != LeavesCommitment {
		return nil
	}
	if s.backend.db != nil {
		s.payloads, err = openMySQLPayloads(s.ctx, s.backend.db)
	} else {
		s.payloads, err = openSQLitePayloads(s.ctx, filepath.Join(s.cfg.Dir, stateDir, payloadsFile))
	}
	return err
}

// startErasures, in a commitment log, applies the erasures a crash left
// unapplied before the log answers anything, then starts the loop that
// keeps doing so and, with Config.Retention, the retention loop.
func (s *Server) startErasures() error {
	if s.payloads == nil {
		return nil
	}
	if err := s.repairErasures(s.ctx, eraseLockWait); err != nil {
		return fmt.Errorf("couldn't apply the erasures logged above the applied mark (a crash between an erasure's append and its deletes): %w", err)
	}
	done := make(chan struct{})
	s.background = append(s.background, done)
	go s.erasureLoop(done)
	if s.cfg.Retention > 0 {
		done := make(chan struct{})
		s.background = append(s.background, done)
		go s.retentionLoop(done)
	}
	return nil
}
