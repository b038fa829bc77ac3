package auditor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tidemark/tidemark/checkpoint"
)

// The state directory holds
//
//	state.json   the last checkpoint accepted (verbatim, as served) and
//	             where the rules scan of new entries has reached
//	full.json    the progress of a full check: the compact range of the
//	             leaves checked so far, the counters, and the commitment
//	             leaves whose content is missing or was served
//	full.spool   verified leaves waiting for the root to be checked before
//	             they go to a Sink (Config.Sink)
//	evidence/    evidence files
//	lock         held (flock) while an auditor uses the directory
//
// Files are replaced atomically (temp file, fsync, rename, fsync of the
// directory), so a crash leaves the previous or the next version, never a
// torn one. Accepted checkpoints only move forward: a state that says a
// checkpoint of size n was accepted means the auditor verified it, and every
// later one must extend it.

const (
	stateFile = "state.json"
	fullFile  = "full.json"
	lockFile  = "lock"
)

// followState is state.json.
type followState struct {
	Origin string `json:"origin"`
	// Accepted is the last checkpoint that verified (log signature, quorum)
	// and extends the one before, verbatim.
	Accepted string `json:"accepted,omitempty"`
	// RulesNext is the first leaf index the rules have not yet seen.
	RulesNext uint64 `json:"rules_next"`
}

// fullState is full.json.
type fullState struct {
	Origin string `json:"origin"`
	// Next is the number of leaves checked: the compact range covers
	// [0, Next).
	Next   uint64   `json:"next"`
	Range  [][]byte `json:"range"`
	Counts Counts   `json:"counts"`
	// Checked is the size of the last checkpoint a full check completed
	// against (Next == Checked then), and Root its root.
	Checked uint64 `json:"checked"`
	Root    []byte `json:"root,omitempty"`
	// Missing are the commitment leaves below Next whose content the log
	// did not serve and that no erasure leaf below Next covers (yet);
	// Served those whose content it served, in a check not yet complete,
	// with the size of the tree each check was against (an erasure leaf
	// in that tree covering them is a finding then; one after it is not:
	// the content was served before the erasure). Runs [from, to).
	Missing []checkpoint.IndexRange `json:"missing,omitempty"`
	Served  []servedRuns            `json:"served,omitempty"`
	// Spool records the export spool (full.spool) written up to Next.
	Spool *spoolState `json:"spool,omitempty"`
}

// servedRuns are the commitment leaves whose content a check against a
// tree of size Below was served.
type servedRuns struct {
	Below uint64                  `json:"below"`
	Runs  []checkpoint.IndexRange `json:"runs"`
}

// stateStore is the state directory; with no directory, state lives in
// memory for the life of the Auditor.
type stateStore struct {
	dir    string
	lock   *os.File
	follow followState
	full   fullState
}

func openState(dir, origin string) (*stateStore, error) {
	s := &stateStore{dir: dir, follow: followState{Origin: origin}, full: fullState{Origin: origin}}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("auditor: couldn't create the state directory: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("auditor: couldn't open the state lock: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("auditor: the state directory %s is in use by another auditor: %w", dir, err)
	}
	s.lock = lf
	if err := s.load(stateFile, &s.follow, origin); err != nil {
		s.close()
		return nil, err
	}
	if err := s.load(fullFile, &s.full, origin); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *stateStore) load(name string, v any, origin string) error {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auditor: couldn't read the state: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("auditor: the state file %s is corrupt (%w); move it away to start afresh, and know that what it held is forgotten", filepath.Join(s.dir, name), err)
	}
	var o struct{ Origin string }
	_ = json.Unmarshal(b, &o)
	if o.Origin != origin {
		return fmt.Errorf("auditor: the state in %s is for origin %q, not the policy's %q: use another --state directory", s.dir, o.Origin, origin)
	}
	return nil
}

func (s *stateStore) saveFollow() error { return s.save(stateFile, s.follow) }
func (s *stateStore) saveFull() error   { return s.save(fullFile, s.full) }

func (s *stateStore) save(name string, v any) error {
	if s.dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, name), append(b, '\n'))
}

func (s *stateStore) close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// writeFileAtomic writes path so that a crash leaves the old or the new
// content: temp file, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("auditor: couldn't write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("auditor: couldn't write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
