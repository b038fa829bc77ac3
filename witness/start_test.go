package witness

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// startConfig is the configuration of a witness in a new directory (not
// created yet) that accepts one log.
func startConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.WriteFile(logs, []byte(logList(newTestLog(t, "example.com/log"))), 0o644); err != nil {
		t.Fatal(err)
	}
	return Config{Dir: filepath.Join(dir, "state"), LogsFile: logs, Name: "witness.test/w1", Logger: slog.New(slog.DiscardHandler)}
}

func mustStart(t *testing.T, cfg Config) *Witness {
	t.Helper()
	w, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return w
}

// TestZeroByteStateWithAKeyIsNoState: a zero-length witness.db (what a
// start that died before its first commit leaves) beside a key is a key
// without state: refused unless Init, as if the file were absent.
func TestZeroByteStateWithAKeyIsNoState(t *testing.T) {
	cfg := startConfig(t)
	w := mustStart(t, cfg)
	vkey := w.VKey()
	w.Close()
	for _, f := range []string{DBFile, DBFile + "-wal", DBFile + "-shm"} {
		os.Remove(filepath.Join(cfg.Dir, f))
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, DBFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, DBFile+"-wal"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "but no state") || !strings.Contains(err.Error(), "--init") {
		t.Fatalf("New with a key and a zero-byte %s: %v, want the key-but-no-state refusal", DBFile, err)
	}
	cfg.Init = true
	w = mustStart(t, cfg)
	defer w.Close()
	if w.VKey() != vkey || w.Created() {
		t.Errorf("with --init: vkey %s (created %t), want the existing key %s", w.VKey(), w.Created(), vkey)
	}
}

// TestZeroByteStateWithoutAKeyIsAFirstStart: with no key, a zero-length
// witness.db is no state either: the witness starts as on its first start
// instead of refusing "state but no key".
func TestZeroByteStateWithoutAKeyIsAFirstStart(t *testing.T) {
	cfg := startConfig(t)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, DBFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w := mustStart(t, cfg)
	defer w.Close()
	if !w.Created() {
		t.Error("the witness did not create its key")
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, KeyFile)); err != nil {
		t.Error(err)
	}
}

// TestWALAloneIsState: a zero-length witness.db with a non-empty
// witness.db-wal may hold committed state (not yet checkpointed into the
// database file), so it counts: without the key, it is refused.
func TestWALAloneIsState(t *testing.T) {
	cfg := startConfig(t)
	os.MkdirAll(cfg.Dir, 0o755)
	os.WriteFile(filepath.Join(cfg.Dir, DBFile), nil, 0o644)
	os.WriteFile(filepath.Join(cfg.Dir, DBFile+"-wal"), []byte("wal frames"), 0o644)
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "but no key") {
		t.Fatalf("New with state only in the WAL and no key: %v, want the state-but-no-key refusal", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, KeyFile)); err == nil {
		t.Error("made a new key for existing state")
	}
}

// TestRefusedStartCreatesNothing: a log list that does not parse, or is
// missing, is found before the key and the state are created.
func TestRefusedStartCreatesNothing(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"bad --logs":       func(c *Config) { os.WriteFile(c.LogsFile, []byte("logs/v0\nvkey nonsense\nqpd 1\n"), 0o644) },
		"missing --logs":   func(c *Config) { c.LogsFile += ".missing" },
		"bad --follow":     func(c *Config) { c.FollowFile = c.LogsFile }, // a logs/v0 list is not "log VKEY URL" lines
		"missing --follow": func(c *Config) { c.FollowFile = c.LogsFile + ".missing" },
	} {
		cfg := startConfig(t)
		mod(&cfg)
		if w, err := New(context.Background(), cfg); err == nil {
			w.Close()
			t.Errorf("%s: started", name)
			continue
		}
		if _, err := os.Stat(cfg.Dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the refused start left %s behind (%v)", name, cfg.Dir, err)
		}
	}
}

// TestNameMustBeTheKeys: once the key exists, a Name that is not its name
// is refused, not ignored; the key's own name, or none, is fine.
func TestNameMustBeTheKeys(t *testing.T) {
	cfg := startConfig(t)
	mustStart(t, cfg).Close()
	other := cfg
	other.Name = "witness.test/renamed"
	_, err := New(context.Background(), other)
	if err == nil || !strings.Contains(err.Error(), `"witness.test/renamed"`) || !strings.Contains(err.Error(), `"witness.test/w1"`) {
		t.Fatalf("New with another name: %v, want a refusal naming both", err)
	}
	for _, name := range []string{"witness.test/w1", ""} {
		c := cfg
		c.Name = name
		w := mustStart(t, c)
		if w.signer.Name() != "witness.test/w1" {
			t.Errorf("Name %q: key named %q", name, w.signer.Name())
		}
		w.Close()
	}
}
