package auditor

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"
)

// gzipBundles serves entry bundles gzipped (by the standard library, as a
// log or a CDN would) to clients that ask, counting them; mangle, if set,
// may change the gzip bytes before they are sent.
func gzipBundles(l *testLog, served *atomic.Int64, mangle func(path string, gz []byte) []byte) {
	l.wrap = func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/tile/entries/") || !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				next.ServeHTTP(rw, r)
				return
			}
			b, err := os.ReadFile(filepath.Join(l.dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
			if err != nil {
				http.NotFound(rw, r)
				return
			}
			var gz bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
			zw.Write(b)
			zw.Close()
			out := gz.Bytes()
			if mangle != nil {
				out = mangle(r.URL.Path, out)
			}
			served.Add(1)
			rw.Header().Set("Content-Encoding", "gzip")
			rw.Write(out)
		})
	}
}

// TestFullOverGzip: with --compression gzip the auditor reads gzipped
// bundles, and a change inside one is caught as it is in plain ones; a
// gzip stream that does not decode to what it says (CRC-32) is not taken.
func TestFullOverGzip(t *testing.T) {
	keys := newTestKeys(t, 1)
	leaves := mixedLeaves(t, "a", 1300) // five full bundles and a partial one
	l := newTestLog(t, keys, leaves)
	honest(l)
	var served atomic.Int64
	gzipBundles(l, &served, nil)
	p := keys.policy(l.srv.URL, 1)
	gz := func(c *Config) { c.Compression = "gzip" }

	r := full(t, newTestAuditor(t, p, gz))
	wantExit(t, r, ExitVerified)
	if f := r.Full; !f.Verified || f.Counts.Leaves != 1300 || f.Counts.Raw != countRaw(leaves) {
		t.Fatalf("full %+v", f)
	}
	if n := served.Load(); n != 6 {
		t.Fatalf("%d bundles served gzipped, want 6", n)
	}

	// A leaf of bundle 2 changed on disk: gzipped as served, the root
	// gives it away.
	file := filepath.Join(l.dir, filepath.FromSlash(layout.EntriesPath(2, 0)))
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(orig)
	i := bytes.Index(b, []byte("secret.read"))
	b[i] = 'S'
	os.WriteFile(file, b, 0o644)
	r = full(t, newTestAuditor(t, p, gz))
	wantExit(t, r, ExitMisbehaviour)
	if has(r, KindRootMismatch) == nil && has(r, KindBadTiles) == nil || r.Full.Verified {
		t.Fatalf("changed leaf: findings %v, full %+v", kinds(r), r.Full)
	}
	os.WriteFile(file, orig, 0o644)

	// The gzip of bundle 3 with a byte of its CRC-32 flipped: the
	// bundle could not be read, nothing is verified.
	gzipBundles(l, &served, func(path string, gz []byte) []byte {
		if path == "/"+layout.EntriesPath(3, 0) {
			gz[len(gz)-6] ^= 1
		}
		return gz
	})
	r = full(t, newTestAuditor(t, p, gz))
	if r.ExitCode() == ExitVerified || r.Full == nil || r.Full.Verified {
		t.Fatalf("bad CRC-32: exit %d, findings %v, full %+v", r.ExitCode(), kinds(r), r.Full)
	}
}
