package log

import (
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// tempNamesUpTo is the oracle: every name Tessera v1.0.4's createTemp can
// give the temporary file of a target called base (base followed by
// strconv.Itoa of a non-negative int32), of at most maxLen bytes.
func tempNamesUpTo(bases []string, maxLen int, into map[string]bool) {
	for _, base := range bases {
		for k := 0; k <= math.MaxInt32; k++ {
			name := base + strconv.Itoa(k)
			if len(name) > maxLen {
				break
			}
			into[name] = true
		}
	}
}

// digitStrings calls f with every string of 1 to maxLen decimal digits.
func digitStrings(maxLen int, f func(string)) {
	var gen func(prefix []byte)
	gen = func(prefix []byte) {
		if len(prefix) > 0 {
			f(string(prefix))
		}
		if len(prefix) == maxLen {
			return
		}
		for c := byte('0'); c <= '9'; c++ {
			gen(append(prefix, c))
		}
	}
	gen(make([]byte, 0, maxLen))
}

// TestStrayTempMatcherOnEveryShortName checks isStrayTemp on every name of
// up to 5 digits in a ".p" directory and in a tile directory (longer names
// differ only in the length of the random suffix; TestStrayTempMatcherOnOtherNames
// tries those),
// against the oracle: exactly the names createTemp can make, minus the
// canonical names, which are never strays.
func TestStrayTempMatcherOnEveryShortName(t *testing.T) {
	var partialBases, tileBases []string
	for p := 1; p <= 255; p++ {
		partialBases = append(partialBases, strconv.Itoa(p))
	}
	for n := 0; n <= 999; n++ {
		tileBases = append(tileBases, strconv.Itoa(1000 + n)[1:])
	}
	for _, c := range []struct {
		name      string
		kind      dirKind
		bases     []string
		maxLen    int
		canonical func(string) bool
	}{
		{"partial", kindPartial, partialBases, 5, func(s string) bool {
			n, err := strconv.Atoi(s)
			return err == nil && n >= 1 && n <= 255 && strconv.Itoa(n) == s
		}},
		{"tiles", kindTiles, tileBases, 5, func(s string) bool { return len(s) == 3 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			temps := map[string]bool{}
			tempNamesUpTo(c.bases, c.maxLen, temps)
			checked, strays, wrong := 0, 0, 0
			digitStrings(c.maxLen, func(name string) {
				checked++
				want := temps[name] && !c.canonical(name)
				if want {
					strays++
				}
				if got := isStrayTemp(c.kind, name); got != want && wrong < 20 {
					wrong++
					t.Errorf("isStrayTemp(%s, %q) = %v, want %v", c.name, name, got, want)
				}
			})
			for _, b := range c.bases {
				if isStrayTemp(c.kind, b) {
					t.Errorf("the canonical name %q is taken for a stray", b)
				}
			}
			t.Logf("%d names checked, %d of them strays", checked, strays)
		})
	}
}

// TestStrayTempMatcherOnOtherNames covers the named files (checkpoint,
// tree state) and names that are not all digits.
func TestStrayTempMatcherOnOtherNames(t *testing.T) {
	suffixes := []string{"0", "1", "9", "10", "255", "256", "1000", "123456789", "2147483647"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		suffixes = append(suffixes, strconv.Itoa(int(r.Int32())))
	}
	badSuffixes := []string{"", "00", "01", "007", "2147483648", "9999999999", "12345678901", "-1", "+1", "1a", "a", " 1", "1 ", ".1", "1.p", "\x001"}
	cases := map[dirKind][]string{
		kindRoot:    {"checkpoint"},
		kindState:   {"treeState", "gcState", "version"},
		kindTiles:   {"000", "001", "255", "999"},
		kindPartial: {"1", "9", "10", "99", "100", "255"},
	}
	for kind, bases := range cases {
		for _, base := range bases {
			if isStrayTemp(kind, base) {
				t.Errorf("kind %d: the canonical %q is taken for a stray", kind, base)
			}
			for _, s := range suffixes {
				name := base + s
				want := !(kind == kindPartial && isTempBase(kindPartial, name))
				if got := isStrayTemp(kind, name); got != want {
					t.Errorf("kind %d: isStrayTemp(%q) = %v, want %v", kind, name, got, want)
				}
			}
			if kind == kindRoot || kind == kindState {
				for _, s := range badSuffixes {
					if isStrayTemp(kind, base+s) {
						t.Errorf("kind %d: %q taken for a stray", kind, base+s)
					}
				}
			}
		}
	}
	never := map[dirKind][]string{
		kindRoot:    {"log.key", "log.pub", "tile", ".state", ".tidemark", "checkpoint.lock", "Checkpoint1", "checkpoin1", "xcheckpoint1", "treeState1", "1234"},
		kindState:   {"treeState.lock", "treeState.lock1", "gcState.lock7", "publish.lock", "publish.lock12", "version.1", "checkpoint1", "treestate1", "1"},
		kindTiles:   {"x001", "x0011", "000.p", "000.p1", "12", "1", "abc1", "0a01"},
		kindPartial: {"0", "00", "01", "0123", "0256", "1.p", "a1", "1a", "x1"},
	}
	for kind, names := range never {
		for _, name := range names {
			if isStrayTemp(kind, name) {
				t.Errorf("kind %d: %q taken for a stray", kind, name)
			}
		}
	}
}

func TestEdgeDirs(t *testing.T) {
	for _, c := range []struct {
		lo, hi uint64
		want   []string
	}{
		{0, 1, []string{".", ".state", "tile/0", "tile/0/000.p", "tile/entries", "tile/entries/000.p"}},
		{255, 257, []string{".", ".state", "tile/0", "tile/0/000.p", "tile/0/001.p", "tile/1", "tile/1/000.p",
			"tile/entries", "tile/entries/000.p", "tile/entries/001.p"}},
		{256*1000 + 5, 256*1000 + 6, []string{".", ".state", "tile/0/x001", "tile/0/x001/000.p", "tile/1", "tile/1/003.p",
			"tile/2", "tile/2/000.p", "tile/entries/x001", "tile/entries/x001/000.p"}},
		{65535, 65537, []string{".", ".state", "tile/0", "tile/0/255.p", "tile/0/256.p", "tile/1", "tile/1/000.p", "tile/1/001.p",
			"tile/2", "tile/2/000.p", "tile/entries", "tile/entries/255.p", "tile/entries/256.p"}},
	} {
		dirs := map[string]dirKind{}
		edgeDirs(c.lo, c.hi, dirs)
		var got []string
		for d := range dirs {
			got = append(got, d)
		}
		sort.Strings(got)
		sort.Strings(c.want)
		if len(got) != len(c.want) {
			t.Errorf("edgeDirs(%d, %d) = %q, want %q", c.lo, c.hi, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("edgeDirs(%d, %d) = %q, want %q", c.lo, c.hi, got, c.want)
				break
			}
		}
		for d, kind := range dirs {
			want := kindTiles
			switch {
			case d == ".":
				want = kindRoot
			case d == ".state":
				want = kindState
			case filepath.Ext(d) == ".p":
				want = kindPartial
			}
			if kind != want {
				t.Errorf("edgeDirs(%d, %d): %s has kind %d, want %d", c.lo, c.hi, d, kind, want)
			}
		}
	}
}

// TestSweepRemovesOldStraysOnly lays out a data directory with canonical
// files, strays old and young, and lookalikes, and sweeps it at a fixed
// time: only old strays at the right edge go.
func TestSweepRemovesOldStraysOnly(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	old, young := now.Add(-time.Hour), now.Add(-2*time.Second)
	type file struct {
		path  string
		mtime time.Time
		gone  bool // the sweep must remove it
	}
	files := []file{
		{"checkpoint", old, false},
		{"checkpoint1804289383", old, true},
		{"checkpoint846930886", young, false},
		{"log.key", old, false},
		{".state/treeState", old, false},
		{".state/treeState.lock", old, false},
		{".state/treeState1681692777", old, true},
		{".state/gcState0", old, true},
		{".state/treeState.lock1", old, false},
		{"tile/entries/000.p/5", old, false},
		{"tile/entries/000.p/123", old, false},        // canonical, though "12"+"3" would fit
		{"tile/entries/000.p/51714636915", old, true}, // "5" + 1714636915
		{"tile/entries/000.p/7424238336", young, false},
		{"tile/entries/000.p/notes", old, false},
		{"tile/entries/0001957747793", old, true},
		{"tile/entries/001.p/3424238336", old, true}, // the window reaches the next bundle
		{"tile/0/000.p/7719885386", old, true},
		{"tile/0/000.p/7", old, false},
		{"tile/entries/x005/0001234", old, false}, // far from the edge
		{".tidemark/idempotency.db", old, false},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	// A directory with a stray's name is never touched.
	if err := os.MkdirAll(filepath.Join(dir, "tile/entries/000.p/6123"), 0o755); err != nil {
		t.Fatal(err)
	}
	removed := prometheus.NewCounter(prometheus.CounterOpts{Name: "removed"})
	f := newStrayFiles(dir, 10*time.Second, 256, func() (uint64, error) { return 7, nil }, slog.New(slog.DiscardHandler), removed)
	next := f.sweep(now)
	for _, fl := range files {
		_, err := os.Stat(filepath.Join(dir, fl.path))
		if gone := os.IsNotExist(err); gone != fl.gone {
			t.Errorf("%s: removed %v, want %v", fl.path, gone, fl.gone)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tile/entries/000.p/6123")); err != nil {
		t.Errorf("a directory was removed: %v", err)
	}
	if got := counterValue(t, removed); got != 7 {
		t.Errorf("removed counter %v, want 7", got)
	}
	if want := young.Add(10 * time.Second); !next.Equal(want) {
		t.Errorf("next sweep at %v, want %v (when the youngest stray comes of age)", next, want)
	}
	// At that time the young ones go too, and nothing is left to wait for.
	if next := f.sweep(next); !next.IsZero() {
		t.Errorf("after the second sweep, next = %v, want none", next)
	}
	for _, p := range []string{"checkpoint846930886", "tile/entries/000.p/7424238336"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s was not removed once old enough", p)
		}
	}
}

// TestSweepFollowsFailuresPastTreeGrowth: strays written where the tree
// stood when appends failed are still found after the tree grew far.
func TestSweepFollowsFailuresPastTreeGrowth(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	strays := []string{"tile/entries/000.p/31234", "tile/entries/x004/000.p/21234"} // at size 3, and at the new edge
	for _, s := range strays {
		p := filepath.Join(dir, s)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, old, old)
	}
	size := uint64(3)
	f := newStrayFiles(dir, time.Second, 256, func() (uint64, error) { return size, nil }, slog.New(slog.DiscardHandler),
		prometheus.NewCounter(prometheus.CounterOpts{Name: "removed"}))
	f.low, f.hasLow = 3, true // as run records on the first failure
	size = 256*4000 + 2
	f.sweep(time.Now())
	for _, s := range strays {
		if _, err := os.Stat(filepath.Join(dir, s)); !os.IsNotExist(err) {
			t.Errorf("%s not removed", s)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
