package log

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
)

// TestOpenKeysWritesNothing: OpenKeys makes a first start's key in memory
// only; New writes it once its checks pass, and a refused New leaves the
// data directory absent.
func TestOpenKeysWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	keys, err := OpenKeys(dir, nil, "test.example/log")
	if err != nil || !keys.IsNew() {
		t.Fatalf("OpenKeys = %v, new %t", err, keys.IsNew())
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenKeys created %s (%v)", dir, err)
	}
	// A policy cannot list a key not made yet: refused, nothing written,
	// and the message says how to make the key first.
	_, other, _ := checkpoint.GenerateLogKey("test.example/log")
	text := "log " + other + "\nquorum none\n"
	p, err := checkpoint.ParsePolicy([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Config{Dir: dir, Keys: keys, Policy: p, PolicyText: []byte(text)}); err == nil || !strings.Contains(err.Error(), "tidemark keygen test.example/log") {
		t.Fatalf("New with a policy that cannot list the new key: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused New created %s (%v)", dir, err)
	}
	s, err := New(context.Background(), Config{Dir: dir, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
	again, err := OpenKeys(dir, nil, "")
	if err != nil || again.IsNew() || again.VKeys[0] != keys.VKeys[0] {
		t.Fatalf("after New, OpenKeys = %v (new %t, %v), want the key New wrote (%s)", err, again.IsNew(), again.VKeys, keys.VKeys[0])
	}
}

// TestOpenKeysRefusesAnotherOrigin: once the key exists, an origin that is
// not its own is refused; its own origin, or none, is fine. The same holds
// for --key files.
func TestOpenKeysRefusesAnotherOrigin(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := LoadKeys(dir, nil, "test.example/log"); err != nil {
		t.Fatal(err)
	}
	for _, files := range [][]string{nil, {filepath.Join(dir, KeyFile)}} {
		if _, err := OpenKeys(dir, files, "other.example/log"); err == nil || !strings.Contains(err.Error(), `"test.example/log"`) {
			t.Errorf("files %v, another origin: %v, want a refusal naming the key's origin", files, err)
		}
		for _, origin := range []string{"test.example/log", ""} {
			if k, err := OpenKeys(dir, files, origin); err != nil || k.Signers[0].Name() != "test.example/log" {
				t.Errorf("files %v, origin %q: %v", files, origin, err)
			}
		}
	}
}
