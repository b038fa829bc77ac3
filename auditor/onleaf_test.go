package auditor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// OnLeaf sees every leaf of a full check once, with its index and bytes;
// Rescan makes a run on a state that has already checked the log read it
// all again; FullResult.Signed is the witnessed checkpoint verbatim, and
// Accepted the checkpoint the state accepted before.
func TestOnLeafRescanSignedAccepted(t *testing.T) {
	keys := newTestKeys(t, 3)
	leaves := mixedLeaves(t, "a", 700)
	l := newTestLog(t, keys, leaves)
	honest(l)
	p := keys.policy(l.srv.URL, 2)
	state := t.TempDir()

	run := func(rescan bool) (*Report, map[uint64][]byte, []byte) {
		var mu sync.Mutex
		seen := map[uint64][]byte{}
		a := newTestAuditor(t, p, func(c *Config) {
			c.StateDir, c.Rescan = state, rescan
			c.OnLeaf = func(i uint64, leaf []byte) {
				mu.Lock()
				defer mu.Unlock()
				if _, dup := seen[i]; dup {
					t.Errorf("leaf %d seen twice", i)
				}
				seen[i] = bytes.Clone(leaf)
			}
		})
		defer a.Close()
		before := a.Accepted()
		return full(t, a), seen, before
	}

	r, seen, before := run(false)
	wantExit(t, r, ExitVerified)
	if before != nil {
		t.Errorf("a new state accepted %q", before)
	}
	if len(seen) != len(leaves) {
		t.Fatalf("OnLeaf saw %d leaves, want %d", len(seen), len(leaves))
	}
	for i, leaf := range leaves {
		if !bytes.Equal(seen[uint64(i)], leaf) {
			t.Fatalf("OnLeaf(%d) got %q, want %q", i, seen[uint64(i)], leaf)
		}
	}
	signed := r.Full.Signed
	if c, _, err := p.Verify(signed); err != nil || c.Size != 700 {
		t.Fatalf("FullResult.Signed %q: %v", signed, err)
	}

	// Without Rescan, a second run has nothing left to read.
	r, seen, before = run(false)
	if !r.Full.Verified || len(seen) != 0 || !bytes.Equal(before, signed) {
		t.Fatalf("second run: verified %v, %d leaves seen, accepted before %q", r.Full.Verified, len(seen), before)
	}
	// With it, every leaf again; and the progress saved is left as it was:
	// the next run without Rescan checks the leaves added since the first.
	l.append(mixedLeaves(t, "b", 300)...)
	honest(l)
	full0, _ := os.ReadFile(filepath.Join(state, fullFile))
	r, seen, before = run(true)
	if f := r.Full; !f.Verified || f.Resumed != 0 || f.Checked != 1000 || f.Counts.Leaves != 1000 || len(seen) != 1000 || !bytes.Equal(before, signed) {
		t.Fatalf("rescan: %+v, %d leaves seen", f, len(seen))
	}
	if full1, _ := os.ReadFile(filepath.Join(state, fullFile)); !bytes.Equal(full0, full1) {
		t.Errorf("a rescan changed the saved progress:\n%s\n%s", full0, full1)
	}
	r, seen, _ = run(false)
	if !r.Full.Verified || r.Full.Resumed != 700 || r.Full.Checked != 300 || len(seen) != 300 {
		t.Fatalf("after a rescan: %+v, %d leaves seen", r.Full, len(seen))
	}
	if _, err := New(Config{Policy: p, Rescan: true, Sink: SinkFunc(func(context.Context, VerifiedCheckpoint, *LeafReader) error { return nil })}); err == nil {
		t.Error("New took Rescan with a Sink")
	}
}
