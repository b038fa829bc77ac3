package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testmount"

	"github.com/transparency-dev/tessera"
)

// roomyDir is a data directory on a file system with room to spare, with
// the write probe in place, as New leaves it.
func roomyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, stateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkDirWritable(dir); err != nil {
		t.Fatal(err)
	}
	if probeDisk(dir) != "" {
		t.Skipf("the file system of %s is nearly full: the classification by probing would not be tested", dir)
	}
	return dir
}

func TestClassifyStorageError(t *testing.T) {
	dir := roomyDir(t)
	pathErr := func(errno syscall.Errno) error {
		return &os.PathError{Op: "write", Path: filepath.Join(dir, "tile/entries/000.p/51714636915"), Err: errno}
	}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"ENOSPC wrapped", fmt.Errorf("failed to write: %w", pathErr(syscall.ENOSPC)), faultFull},
		{"EDQUOT wrapped", fmt.Errorf("failed to write: %w", pathErr(syscall.EDQUOT)), faultFull},
		{"EROFS wrapped", fmt.Errorf("open: %w", pathErr(syscall.EROFS)), faultReadOnly},
		{"not writable, from the append queue", fmt.Errorf("%w: %w", errNotWritable, syscall.EROFS), faultReadOnly},
		// Tessera v1.0.4's createEx and overwrite flatten with %v.
		{"ENOSPC flattened", fmt.Errorf("failed to create temp file: %v", pathErr(syscall.ENOSPC)), faultFull},
		{"EROFS flattened", fmt.Errorf("failed to create temp file: %v", pathErr(syscall.EROFS)), faultReadOnly},
		{"EIO flattened", fmt.Errorf("failed to set tile: %v", pathErr(syscall.EIO)), faultIO},
		{"EIO wrapped", fmt.Errorf("sync: %w", pathErr(syscall.EIO)), faultIO},
		{"something else", errors.New("logic error: entriesInBundle(300) > max bundle size 256"), ""},
		{"permission", fmt.Errorf("open: %w", pathErr(syscall.EACCES)), ""},
	} {
		if got := classifyStorageError(dir, c.err); got != c.want {
			t.Errorf("%s: classified %q, want %q", c.name, got, c.want)
		}
	}
}

func TestStorageMessageSaysWhatWasLogged(t *testing.T) {
	evs := requestEvents("batch-7", true, "line", [][]byte{[]byte(`{}`), []byte(`{}`), []byte(`{}`)})
	for _, c := range []struct {
		kind    string
		written map[int]uint64
		want    []string
		notWant []string
	}{
		{faultFull, nil, []string{"the log's disk is full", "nothing of this request was logged", "Retry-After"}, []string{"line"}},
		{faultReadOnly, map[int]uint64{}, []string{"the log's disk is read-only", "nothing of this request was logged"}, nil},
		{faultFull, map[int]uint64{0: 10, 1: 11}, []string{"2 of the 3 events", "line 1 as index 10", "line 2 as index 11", "Idempotency-Key", "not logged again"},
			[]string{"line 3", "nothing"}},
		{faultIO, nil, []string{"I/O error", "may or may not have been logged"}, []string{"nothing"}},
	} {
		msg := storageMessage(c.kind, evs, c.written)
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s, %v: %q does not say %q", c.kind, c.written, msg, w)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(msg, w) {
				t.Errorf("%s, %v: %q says %q", c.kind, c.written, msg, w)
			}
		}
		if strings.Contains(msg, "/") && !strings.Contains(msg, "I/O") {
			t.Errorf("%q looks like it holds a path", msg)
		}
	}
	// Many logged events are named up to a bound.
	many := requestEvents("", true, "line", make([][]byte, 40))
	written := map[int]uint64{}
	for i := 0; i < 30; i++ {
		written[i] = uint64(100 + i)
	}
	msg := storageMessage(faultFull, many, written)
	if !strings.Contains(msg, "line 10 as index 109") || strings.Contains(msg, "line 11 ") || !strings.Contains(msg, "and 20 more") {
		t.Errorf("30 logged events: %q", msg)
	}
}

// TestAppendQueueRefusesGroupWhenDiskNotWritable: a group the write check
// fails never reaches Tessera, and each of its entries gets the check's
// error; once the check passes, groups go through again.
func TestAppendQueueRefusesGroupWhenDiskNotWritable(t *testing.T) {
	var added int
	add := func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
		added++
		i := uint64(added - 1)
		return func() (tessera.Index, error) { return tessera.Index{Index: i}, nil }
	}
	checkErr := fmt.Errorf("%w: %w", errNotWritable, syscall.EROFS)
	q := newAppendQueue(add, func() error { return checkErr }, 0, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.run(ctx)

	entries := []*tessera.Entry{tessera.NewEntry([]byte("a")), tessera.NewEntry([]byte("b"))}
	_, errs := q.append(ctx, entries)
	for i, err := range errs {
		if !errors.Is(err, syscall.EROFS) || !errors.Is(err, errNotWritable) {
			t.Errorf("entry %d: %v, want the check's error", i, err)
		}
	}
	if added != 0 {
		t.Errorf("%d entries reached Tessera past a failed check", added)
	}
	checkErr = nil
	indexes, errs := q.append(ctx, entries)
	for i := range entries {
		if errs[i] != nil || indexes[i].Index != uint64(i) {
			t.Errorf("after the check passes, entry %d: %v, %v", i, indexes[i], errs[i])
		}
	}
}

// TestCheckWritableOpensNoTesseraFile: the check and the probe touch only
// the server's own probe file, never Tessera's lock files (closing any
// descriptor of those drops the process's fcntl locks).
func TestCheckWritableOpensNoTesseraFile(t *testing.T) {
	dir := roomyDir(t)
	if err := checkWritable(dir); err != nil {
		t.Fatalf("a writable directory fails the check: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".state")); !os.IsNotExist(err) {
		t.Errorf("the check created Tessera's .state: %v", err)
	}
	// A probe file that went missing is made again, not taken for a fault.
	os.Remove(filepath.Join(dir, stateDir, writeProbeFile))
	if err := checkWritable(dir); err != nil {
		t.Errorf("without its probe file the check fails: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateDir, writeProbeFile)); err != nil {
		t.Errorf("the probe file was not made again: %v", err)
	}
}

// A request still queued when the append queue stops (the shutdown deadline
// passed) fails at once with errLogStopping instead of waiting forever:
// waiting, it held its idempotency epoch, and the final watermark save
// waited for that epoch, so the process never exited.
func TestQueuedAppendFailsWhenTheAppendQueueStops(t *testing.T) {
	add := func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
		return func() (tessera.Index, error) { return tessera.Index{}, nil }
	}
	q := newAppendQueue(add, nil, 0, 16)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.run(ctx) // returns at once: the log is stopping
	done := make(chan []error)
	go func() {
		_, errs := q.append(context.Background(), []*tessera.Entry{tessera.NewEntry([]byte("late"))})
		done <- errs
	}()
	errs := <-done
	if !errors.Is(errs[0], errLogStopping) {
		t.Errorf("queued after the append queue stopped: %v, want errLogStopping", errs[0])
	}
}

// A new log on a full disk cannot start: Tessera writes its first tree
// state and checkpoint before it serves anything. New says so, and what to
// do.
func TestNewLogOnAFullDiskSaysSo(t *testing.T) {
	mnt := testmount.Tmpfs(t, 1024)
	dir := filepath.Join(mnt, "log")
	keys, _, err := LoadKeys(dir, nil, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	filler := testmount.Fill(t, mnt)
	cfg := Config{Dir: dir, Keys: keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond}
	s, err := New(context.Background(), cfg)
	if err == nil {
		s.Close(context.Background())
		t.Fatal("a new log started on a full disk")
	}
	if !strings.Contains(err.Error(), "the data directory's disk is full") || !strings.Contains(err.Error(), "free space and start again") {
		t.Errorf("New on a full disk: %v\nwant it to say the disk is full and to free space", err)
	}
	// And it does start once there is room.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s, err = New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New once space returned: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A damaged index fails the start also on a full disk: only SQLite's
// errors that a disk can cause count as the disk's.
func TestDamagedIndexOnAFullDiskFailsTheStart(t *testing.T) {
	mnt := testmount.Tmpfs(t, 4096)
	dir := filepath.Join(mnt, "log")
	keys, _, err := LoadKeys(dir, nil, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{t: t, dir: dir, cfg: Config{Dir: dir, Keys: keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond}}
	tl.start()
	tl.postEvent(`{"id":"e1"}`)
	tl.close()
	if err := os.WriteFile(filepath.Join(dir, stateDir, indexFile), bytes.Repeat([]byte("not an index "), 400), 0o644); err != nil {
		t.Fatal(err)
	}
	testmount.Fill(t, mnt)
	s, err := New(context.Background(), tl.cfg)
	if err == nil {
		s.Close(context.Background())
		t.Fatal("the log started on a full disk with a damaged index")
	}
	if !strings.Contains(err.Error(), "not a database") || strings.Contains(err.Error(), "disk is full") {
		t.Errorf("New with a damaged index on a full disk: %v\nwant it to name the damaged file, not the disk", err)
	}
}
