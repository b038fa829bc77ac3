package log

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// A batch that failed may leave bundles and tiles past the integrated tree,
// which the next batch overwrites with other entries. Served with
// "immutable" cache headers, a CDN would keep the wrong bytes forever and
// verifiers would see a log that rewrote its history. Only tiles within the
// integrated tree are served.
func TestTilesPastTheTreeAreNotServed(t *testing.T) {
	tl := newTestLog(t, nil)
	for i := range 3 {
		tl.postEvent(fmt.Sprintf(`{"n":%d}`, i))
	}
	waitForCheckpoint(t, tl, 3)
	if r := tl.get("/tile/entries/000.p/3"); r.status != 200 {
		t.Fatalf("bundle within the tree: %d", r.status)
	}
	if r := tl.get("/tile/0/000.p/3"); r.status != 200 {
		t.Fatalf("tile within the tree: %d", r.status)
	}
	// What a failed batch of 6 more entries would have left behind.
	for _, p := range []string{"tile/entries/000.p/9", "tile/0/000.p/9", "tile/entries/001.p/1"} {
		path := filepath.Join(tl.dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte("not in the tree"), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := tl.get("/" + p); r.status != http.StatusNotFound {
			t.Errorf("GET /%s past the tree: %d (Cache-Control %q), want 404", p, r.status, r.header.Get("Cache-Control"))
		}
	}
	// Once the tree covers it, it is served (Tessera rewrote the file).
	for i := 3; i < 9; i++ {
		tl.postEvent(fmt.Sprintf(`{"n":%d}`, i))
	}
	if r := tl.get("/tile/entries/000.p/9"); r.status != 200 || bytes.Contains(r.body, []byte("not in the tree")) {
		t.Errorf("bundle of size 9 after the tree grew: %d", r.status)
	}
}
