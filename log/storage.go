package log

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/transparency-dev/tessera"
)

// Storage faults: what the log does when its disk fills up or turns
// read-only under it.
//
// An append that fails because of the disk is answered 503 with Retry-After
// and a message that says what was logged (nothing, or which events) and to
// retry; the details go to the server's own log, never to the client. The
// log needs no restart to recover: Tessera reads the tree state again at the
// start of every batch, so the first batch after space returns continues from
// the last integrated entry, and the entries of a failed batch (written to
// bundle files but never integrated) are overwritten.
//
// Tessera v1.0.4 flattens most of its file errors with %v, so an errno is
// often lost by the time an append fails: classifyStorageError then looks at
// the file system itself, at once, while the failed write still fills it,
// and only then at the error's text.
//
// A read-only disk would otherwise stop the process: Tessera v1.0.4 panics
// when it cannot open its lock file for writing. The server refuses to start
// on one (checkDirWritable), and the append queue checks before each group
// (checkWritable; appendqueue.go says what window remains). The stray
// temporary files Tessera leaves after failed writes are strays.go's.
//
// A log restarted on a full disk cannot open its idempotency index (SQLite's
// WAL mode writes as it opens): it serves reads and refuses writes until the
// index opens, which it tries by itself (New, indexFault).
//
// What the probes cannot see: an I/O error on the fsync that follows the
// tree state's rename may leave the batch's entries in the tree although
// their requests failed; that is answered as faultIO, "may or may not have
// been logged".

// Kinds of storage fault, as the tidemark_log_storage_errors_total label.
const (
	faultFull     = "full"
	faultReadOnly = "read_only"
	faultIO       = "io_error"
	faultOther    = "other"
)

// storageRetryAfter is the Retry-After, in seconds, of an append refused
// because of the disk: an operator has to act before it clears, so retrying
// every second would only add load, and ten seconds do not delay recovery
// much.
const storageRetryAfter = 10

// minFreeBytes: a file system with less space than this available, probed
// just after an unexplained write failure, is taken to be full. A write that
// fails with ENOSPC has filled the file system to the last block before
// failing (the temporary file Tessera leaves holds what fitted), so what is
// left then is far below this.
const minFreeBytes = 1 << 20

// writeProbeFile, in the server's own state directory, is opened for
// writing to learn whether the file system takes writes. access(2) and
// statfs(2) cannot tell: an ext4 file system that turned itself read-only
// after an error (errors=remount-ro) is still mounted "rw" for them on
// current kernels, and only refuses opens for writing, with EROFS.
const writeProbeFile = "write-probe"

// errNotWritable is how the append queue fails a group it did not hand to
// Tessera because the data directory cannot be written (see checkWritable).
var errNotWritable = errors.New("the log's data directory is not writable")

// classifyStorageError says whether err, an append's failure, comes from the
// disk under dir: faultFull, faultReadOnly, faultIO, or "" for anything
// else.
func classifyStorageError(dir string, err error) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return faultReadOnly
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return faultFull
	}
	if kind := probeDisk(dir); kind != "" {
		return kind
	}
	// The errno may survive only as text, after Tessera's %v.
	msg := err.Error()
	switch {
	case strings.Contains(msg, syscall.EROFS.Error()):
		return faultReadOnly
	case strings.Contains(msg, syscall.ENOSPC.Error()), strings.Contains(msg, syscall.EDQUOT.Error()):
		return faultFull
	case errors.Is(err, syscall.EIO), strings.Contains(msg, syscall.EIO.Error()):
		return faultIO
	}
	return ""
}

// probeDisk looks at the file system holding dir: faultReadOnly if it
// refuses writes, faultFull if it has less than minFreeBytes or no inode
// left for this process, "" otherwise (or if it cannot tell).
func probeDisk(dir string) string {
	if err := openForWriting(dir); errors.Is(err, syscall.EROFS) {
		return faultReadOnly
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

// openForWriting opens the write probe for writing (creating it if it is
// gone) and closes it again.
func openForWriting(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, stateDir, writeProbeFile), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// checkWritable fails if the data directory does not take writes: Tessera
// v1.0.4 panics when it cannot open its lock file for writing
// (sequenceBatch), so the append queue asks first. It opens a file of its own:
// closing any descriptor of Tessera's lock file would drop this process's
// fcntl lock on it.
func checkWritable(dir string) error {
	if err := openForWriting(dir); err != nil {
		return fmt.Errorf("%w: %w", errNotWritable, err)
	}
	return nil
}

// checkDirWritable refuses to start on a data directory that cannot be
// written (Tessera would panic taking its lock there), and creates the
// write probe.
func checkDirWritable(dir string) error {
	err := openForWriting(dir)
	switch {
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("the data directory %s is on a read-only file system: the log cannot write there (remount it read-write, after a file system check if the kernel made it read-only)", dir)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// Only a new data directory gets here: the probe exists in an
		// old one, and opening it takes no space.
		return fmt.Errorf("the data directory's disk is full (%s): free space and start again: %w", dir, err)
	case err != nil:
		return fmt.Errorf("the data directory %s is not writable: %w", dir, err)
	}
	return nil
}

// indexFault says whether err, a failure to open or rebuild the idempotency
// index, comes from the disk under dir: faultFull or faultReadOnly, or ""
// for anything else. Only a SQLite error of a kind a disk can cause counts
// (sqliteMayBeDisk), and then only if the disk probes full or read-only (or
// SQLite says full: a quota): a damaged index file, or a failure to read
// the log's own files, is never the disk's, even on a full disk.
func indexFault(dir string, err error) string {
	if !sqliteMayBeDisk(err) {
		return ""
	}
	if kind := probeDisk(dir); kind != "" {
		return kind
	}
	if sqliteCode(err) == sqliteFull {
		return faultFull
	}
	return ""
}

// indexDiskFault says whether the idempotency index's database failed
// because the log's disk is full or read-only (only the SQLite index beside
// a POSIX log shares its disk), and which; "" otherwise.
func (s *Server) indexDiskFault(err error) string {
	if s.backend.kind != "posix" {
		return ""
	}
	return indexFault(s.cfg.Dir, err)
}

// errIndexNotOpen is how the append queue fails a group handed to it before
// the idempotency index is open (see Server.acceptingWrites, which refuses
// such writes earlier; this is the backstop).
var errIndexNotOpen = errors.New("the idempotency index is not open")

// indexNotOpenError answers a write that came while the idempotency index
// cannot be opened: 503 with Retry-After, and the reason (a fault kind as
// indexFault says, or faultOther).
func indexNotOpenError(kind string) error {
	const rest = ": nothing of this request was logged; retry after the time in Retry-After"
	if kind == faultOther {
		e := errorf(http.StatusServiceUnavailable, "index_unavailable",
			"the log's idempotency index, which answers retries, cannot be opened (the server's log says why)%s", rest)
		e.retryAfter = storageRetryAfter
		return e
	}
	e := errorf(http.StatusServiceUnavailable, "disk_"+kind,
		"the log's disk is %s, so its idempotency index, which answers retries, cannot be opened and no writes are taken%s", faultWords(kind), rest)
	e.retryAfter = storageRetryAfter
	return e
}

// appendError turns the failure of an append into the request's answer. A
// storage fault is a 503 with Retry-After that says which of evs were
// logged (written maps a position in evs to its index; evs is nil for /add)
// and to retry; anything else is an internal error. Either way the details
// are logged here, at most once per storageLogEvery with a count.
func (s *Server) appendError(err error, evs []ingestEvent, written map[int]uint64) error {
	if errors.Is(err, errLogStopping) {
		e := errorf(http.StatusServiceUnavailable, "stopping", "%v: retry", err)
		e.retryAfter = 1
		return e
	}
	if errors.Is(err, errIndexNotOpen) {
		return indexNotOpenError(s.indexWaitKind())
	}
	if errors.Is(err, tessera.ErrPushback) && len(written) == 0 {
		// S3: too many entries sequenced and not yet integrated.
		e := errorf(http.StatusServiceUnavailable, "pushback", "the log is integrating a backlog: nothing of this request was logged; retry after the time in Retry-After")
		e.retryAfter = 1
		return e
	}
	kind := classifyStorageError(s.cfg.Dir, err)
	s.metrics.storageErrors.WithLabelValues(cmp.Or(kind, faultOther)).Inc()
	if kind == "" {
		return fmt.Errorf("couldn't append to the log: %w", err)
	}
	s.storageLog.log(s, kind, err)
	s.strays.failed()
	msg := storageMessage(kind, evs, written)
	if ml := (*maybeLoggedError)(nil); errors.As(err, &ml) {
		msg = mayBeLoggedMessage(kind)
	}
	e := errorf(http.StatusServiceUnavailable, "disk_"+kind, "%s", msg)
	e.retryAfter = storageRetryAfter
	return e
}

// mayBeLoggedMessage is what a client is told when its entries may be in
// the log although the append failed (see maybeLoggedError).
func mayBeLoggedMessage(kind string) string {
	return "the log's disk is " + faultWords(kind) + ": this request may or may not have been logged; " +
		"retry after the time in Retry-After with the same Idempotency-Key or event ids"
}

// maxNamed bounds the logged events a 503 names one by one.
const maxNamed = 10

// storageMessage is what a client is told when an append failed on the
// disk: what happened, what of its request is in the log, and what to do.
func storageMessage(kind string, evs []ingestEvent, written map[int]uint64) string {
	what := "the log's disk is " + faultWords(kind)
	if kind == faultIO {
		// An I/O error can come from the fsync after the tree state was
		// renamed into place: the entries may be in the tree.
		return mayBeLoggedMessage(kind)
	}
	if len(written) == 0 {
		return what + ": nothing of this request was logged; retry after the time in Retry-After"
	}
	var named []string
	for i := range evs {
		idx, ok := written[i]
		if !ok {
			continue
		}
		if len(named) == maxNamed {
			named = append(named, fmt.Sprintf("and %d more", len(written)-maxNamed))
			break
		}
		named = append(named, fmt.Sprintf("%s as index %d", evs[i].name(), idx))
	}
	return fmt.Sprintf("%s: %d of the %d events of this request were logged before it failed (%s) and the others were not; "+
		"retry after the time in Retry-After with the same Idempotency-Key or event ids, and the logged ones are answered as duplicates, not logged again",
		what, len(written), len(evs), strings.Join(named, ", "))
}

// storageLogEvery bounds how often a storage fault is logged: under load a
// full disk fails every request.
const storageLogEvery = 10 * time.Second

// storageLogger logs storage faults, rate-limited.
type storageLogger struct{ rateLimited }

func (l *storageLogger) log(s *Server, kind string, err error) {
	if n, ok := l.allow(storageLogEvery); ok {
		s.log.Error("appends are failing: the log's disk is "+faultWords(kind)+"; writers get 503 until it is fixed",
			"err", err, "dir", s.cfg.Dir, "similar_failures_not_logged", n)
	}
}

// rateLimited lets one message of a kind through per interval, and counts
// the others, so that a flood (a full disk under load, a sender reusing
// ids on purpose) does not flood the log's own logs.
type rateLimited struct {
	mu         sync.Mutex // guards the fields below
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many were held back since the
// last one logged.
func (l *rateLimited) allow(every time.Duration) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < every {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}

// faultWords says a kind of fault in words: "the log's disk is ...".
func faultWords(kind string) string {
	switch kind {
	case faultFull:
		return "full"
	case faultReadOnly:
		return "read-only"
	case faultIO:
		return "failing with I/O errors"
	}
	return "failing"
}

// diskStatus is what /readyz says about the disk: "" when it takes writes.
func (s *Server) diskStatus() string {
	if kind := probeDisk(s.cfg.Dir); kind != "" {
		return "the log's disk is " + faultWords(kind)
	}
	return ""
}

// writeStatus is what /readyz says about writes: "" when they are taken.
func (s *Server) writeStatus() string {
	if !s.indexReady.Load() {
		if kind := s.indexWaitKind(); kind != faultOther {
			return "the log's disk is " + faultWords(kind) + ", so its idempotency index cannot be opened"
		}
		return "the idempotency index cannot be opened (the server's log says why)"
	}
	return s.diskStatus()
}
