package log

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera/api/layout"
)

// Stray temporary files.
//
// Tessera v1.0.4's POSIX driver writes every file as a temporary file (the
// target's path followed by the decimal digits of a random non-negative
// int32, in the target's directory), then renames or links it into place.
// When the write of the temporary file fails, createTemp returns "" as its
// name before its deferred os.Remove(name) runs, so the half-written file
// stays. On a full disk each failed append leaves one, holding whatever
// fitted, and a full disk stays full. strayFiles removes them.
//
// Only files whose name is a canonical name Tessera writes in that directory
// followed by such digits are candidates, and never a canonical name itself;
// only in the directories Tessera writes at the right edge of the tree (where
// a failed batch writes), and only once they are older than minAge. Tessera's
// own temporary files live for one write and fsync; and one removed while
// still in use only fails that batch (its rename fails; nothing was
// acknowledged), so minAge trades a spurious 503 under a pathologically slow
// disk against how long space stays taken.

// defaultStrayTempAge is Config.StrayTempAge's default.
const defaultStrayTempAge = 10 * time.Second

// straySweepEvery bounds how often failed appends trigger a sweep.
const straySweepEvery = time.Second

// A dirKind says which canonical names a directory holds.
type dirKind uint8

const (
	kindRoot    dirKind = iota // the data directory: "checkpoint"
	kindState                  // Tessera's .state: "treeState", "gcState", "version"
	kindTiles                  // a tile or entry bundle directory: full tiles "000" to "999"
	kindPartial                // a "NNN.p" directory: partial tiles "1" to "255"
)

// isTempBase reports whether name is the name of a file Tessera writes
// through a temporary file in a directory of the kind.
func isTempBase(kind dirKind, name string) bool {
	switch kind {
	case kindRoot:
		return name == layout.CheckpointPath
	case kindState:
		return name == "treeState" || name == "gcState" || name == "version"
	case kindTiles:
		return len(name) == 3 && allDigits(name)
	case kindPartial:
		return len(name) > 0 && len(name) <= 3 && allDigits(name) && name[0] != '0' && atoiSmall(name) <= 255
	}
	return false
}

// isCanonicalName reports whether name is a name Tessera gives a file in a
// directory of the kind (isTempBase, plus the lock files in .state): such a
// file is never removed, whatever else it might look like.
func isCanonicalName(kind dirKind, name string) bool {
	if isTempBase(kind, name) {
		return true
	}
	return kind == kindState && (name == "treeState.lock" || name == "gcState.lock" || name == "publish.lock")
}

// isTempSuffix reports whether s is what strconv.Itoa makes of a
// non-negative int32: "0", or digits without a leading zero up to
// 2147483647.
func isTempSuffix(s string) bool {
	if len(s) == 0 || len(s) > 10 || !allDigits(s) || (len(s) > 1 && s[0] == '0') {
		return false
	}
	if len(s) < 10 {
		return true
	}
	return s <= "2147483647" // same length: byte order is numeric order
}

// isStrayTemp reports whether a file called name, in a directory of the
// kind, is a temporary file of Tessera's: a canonical name followed by a
// temporary suffix, and not itself a canonical name.
func isStrayTemp(kind dirKind, name string) bool {
	if isCanonicalName(kind, name) {
		return false
	}
	for k := 1; k < len(name); k++ {
		if isTempBase(kind, name[:k]) && isTempSuffix(name[k:]) {
			return true
		}
	}
	return false
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// atoiSmall is the value of at most three decimal digits.
func atoiSmall(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// edgeDirs returns the directories, relative to the data directory, that
// Tessera writes when it sequences and integrates entries lo to hi (an
// exclusive bound, hi > lo): each entry bundle's and each tile's directory and
// its ".p" directory, at every level, plus the root (checkpoint) and .state.
func edgeDirs(lo, hi uint64, dirs map[string]dirKind) {
	dirs["."] = kindRoot
	dirs[".state"] = kindState
	add := func(full string) {
		dirs[filepath.Dir(full)] = kindTiles
		dirs[full+".p"] = kindPartial
	}
	last := hi - 1
	for i := lo / layout.EntryBundleWidth; i <= last/layout.EntryBundleWidth; i++ {
		add(layout.EntriesPath(i, 0))
	}
	for level := uint64(0); ; level++ {
		shift := layout.TileHeight * (level + 1)
		for i := lo >> shift; i <= last>>shift; i++ {
			add(layout.TilePath(level, i, 0))
		}
		if last>>shift == 0 {
			return
		}
	}
}

// strayFiles finds and removes Tessera's stray temporary files (see above).
type strayFiles struct {
	dir     string
	minAge  time.Duration
	window  uint64 // entries a failed batch may have written past the tree size: Tessera's batch size
	size    func() (uint64, error)
	log     *slog.Logger
	removed prometheus.Counter

	kick chan struct{} // a failed append asks for a sweep; capacity 1

	// low is the tree size when the first failure not yet swept clean was
	// seen, if any: those failures wrote from there on. Owned by run (and
	// by New before run starts).
	low    uint64
	hasLow bool
}

func newStrayFiles(dir string, minAge time.Duration, window uint64, size func() (uint64, error), log *slog.Logger, removed prometheus.Counter) *strayFiles {
	return &strayFiles{dir: dir, minAge: minAge, window: window, size: size, log: log, removed: removed, kick: make(chan struct{}, 1)}
}

// failed asks for a sweep after a failed append, without waiting.
func (f *strayFiles) failed() {
	if f == nil {
		return
	}
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// run sweeps after failed appends (at most once per straySweepEvery), and
// again when the candidates a sweep left for being too young come of age,
// the first time at next (zero: none). It stops with ctx.
func (f *strayFiles) run(ctx context.Context, next time.Time) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	if !next.IsZero() {
		timer.Reset(time.Until(next))
	}
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
			if !f.hasLow {
				if n, err := f.size(); err == nil {
					f.low, f.hasLow = n, true
				}
			}
		case <-timer.C:
		}
		timer.Stop()
		if next := f.sweep(time.Now()); next.IsZero() {
			f.hasLow = false
		} else {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(straySweepEvery):
		}
	}
}

// sweep removes the stray temporary files older than minAge in the
// directories at the right edge of the tree, and returns when the youngest
// candidate it left comes of age (zero if none).
func (f *strayFiles) sweep(now time.Time) (next time.Time) {
	cur, err := f.size()
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.log.Warn("couldn't look for stray temporary files: no tree size", "err", err)
			return time.Time{}
		}
		cur = 0
	}
	lo := cur
	if f.hasLow && f.low < lo {
		lo = f.low
	}
	dirs := map[string]dirKind{}
	// One range when the tree grew little since the first failure; else the
	// two places failed batches wrote: there and now.
	if cur-lo <= 64*f.window {
		edgeDirs(lo, cur+f.window, dirs)
	} else {
		edgeDirs(lo, lo+f.window, dirs)
		edgeDirs(cur, cur+f.window, dirs)
	}
	removed, young := 0, 0
	var removeErr error
	for rel, kind := range dirs {
		d := filepath.Join(f.dir, rel)
		entries, err := os.ReadDir(d)
		if err != nil {
			continue // most .p directories do not exist
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !isStrayTemp(kind, e.Name()) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			if due := info.ModTime().Add(f.minAge); due.After(now) {
				young++
				if next.IsZero() || due.Before(next) {
					next = due
				}
				continue
			}
			if err := os.Remove(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				removeErr = err
				continue
			}
			removed++
		}
	}
	if removed > 0 {
		f.removed.Add(float64(removed))
		f.log.Info("removed stray temporary files left by failed writes", "files", removed, "left_for_now", young)
	}
	if removeErr != nil {
		level := slog.LevelWarn
		if errors.Is(removeErr, syscall.EROFS) {
			level = slog.LevelDebug // the disk is read-only: said elsewhere
		}
		f.log.Log(context.Background(), level, "couldn't remove stray temporary files", "err", removeErr)
	}
	return next
}
