package witness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"modernc.org/sqlite"
)

// Storage faults: the witness never answers a cosignature it has not stored
// durably, so when its disk is full or read-only every add-checkpoint that
// would advance a log's state fails, and the state stays as it was (the
// transaction is rolled back; memory changes only after a commit). It is
// answered 503 with Retry-After: tlog-witness v1.0.0 names no status for
// this, and a 503 tells the log to try again later, as it would after any
// failure. The witness needs no restart when space returns: the next
// transaction simply commits.

// Kinds of storage fault, as the tidemark_witness_storage_errors_total label.
const (
	faultFull     = "full"
	faultReadOnly = "read_only"
)

// storageRetryAfter is the Retry-After of a request refused because of the
// disk, in seconds: a full disk waits for an operator.
const storageRetryAfter = 10

// minFreeBytes: with less than this available, just after a failed commit,
// the disk is taken to be full (SQLite's WAL grows a page at a time, and a
// failed write has used what was left).
const minFreeBytes = 1 << 20

// A storageError is a state write that failed because the disk under the
// state is full or read-only.
type storageError struct {
	kind string // faultFull or faultReadOnly
	err  error
}

func (e *storageError) Error() string {
	return fmt.Sprintf("the witness's disk is %s: %v", strings.ReplaceAll(e.kind, "_", "-"), e.err)
}

func (e *storageError) Unwrap() error { return e.err }

// answer is what a requester is told: no paths, what to do.
func (e *storageError) answer() string {
	return "the witness's disk is " + strings.ReplaceAll(e.kind, "_", "-") +
		": it cannot store the checkpoint durably, so it did not cosign it; retry after the time in Retry-After\n"
}

// sqliteFull is SQLITE_FULL, SQLite's primary result code for a full disk.
const sqliteFull = 13

// classifyStateError wraps err, the failure of a state transaction on the
// database in dir, in a storageError when the disk is the cause; otherwise
// it returns err as it is. SQLite reports a full disk as SQLITE_FULL, but a
// read-only one as SQLITE_READONLY or as one of many I/O errors, so for
// anything else the file system is probed.
func classifyStateError(dir string, err error) error {
	kind := ""
	var se *sqlite.Error
	switch {
	case errors.Is(err, syscall.EROFS):
		kind = faultReadOnly
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		kind = faultFull
	case errors.As(err, &se) && se.Code()&0xff == sqliteFull:
		kind = faultFull
	default:
		kind = probeDisk(dir)
	}
	if kind == "" {
		return err
	}
	return &storageError{kind: kind, err: err}
}

// probeDisk looks at the file system holding dir: faultReadOnly if it
// refuses writes, faultFull if it has less than minFreeBytes or no inode
// left, "" otherwise.
//
// Read-only is learnt by opening the witness's lock file for writing:
// access(2) and statfs(2) still say "rw" for an ext4 file system that turned
// itself read-only after an error. The lock file is locked with flock(2),
// which belongs to the open file description that took it, so opening and
// closing another one leaves the lock alone. (The database itself is never
// opened here: SQLite's fcntl locks would go with any closed descriptor.)
func probeDisk(dir string) string {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_WRONLY, 0)
	if errors.Is(err, syscall.EROFS) {
		return faultReadOnly
	}
	if err == nil {
		f.Close()
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return ""
	}
	if st.Bavail*uint64(st.Bsize) < minFreeBytes || (st.Files > 0 && st.Ffree == 0) {
		return faultFull
	}
	return ""
}
