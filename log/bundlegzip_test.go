package log

import (
	"bytes"
	"compress/gzip"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gzipServed reads tidemark_log_entry_bundle_gzip_total{result}.
func (tl *testLog) gzipServed(result string) float64 {
	tl.t.Helper()
	mfs, err := tl.s.cfg.Registry.Gather()
	if err != nil {
		tl.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tidemark_log_entry_bundle_gzip_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("not whole gzip: %v", err)
	}
	return out
}

func TestFullBundleIsGzippedOnce(t *testing.T) {
	tl := newTestLog(t, nil)
	r := tl.post("/v1/events", "application/x-ndjson", []byte(strings.Repeat(`{"action":"bundle.fill"}`+"\n", 300)))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	waitForCheckpoint(t, tl, 300)
	raw, err := os.ReadFile(filepath.Join(tl.dir, "tile", "entries", "000"))
	if err != nil {
		t.Fatal(err)
	}

	first := tl.get("/tile/entries/000", "Accept-Encoding", "gzip")
	second := tl.get("/tile/entries/000", "Accept-Encoding", "gzip")
	for _, r := range []response{first, second} {
		if r.status != 200 || r.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("full bundle: %d %v", r.status, r.header)
		}
	}
	if !bytes.Equal(first.body, second.body) {
		t.Error("the two answers differ")
	}
	if !bytes.Equal(gunzip(t, second.body), raw) {
		t.Error("the answer does not gunzip to the bundle")
	}
	if stored, cached := tl.gzipServed("stored"), tl.gzipServed("cached"); stored != 1 || cached != 1 {
		t.Errorf("two reads: compressed and stored %v times, served from the cache %v times; want 1 and 1", stored, cached)
	}

	// A cached file that is not this bundle's gzip (another log once in
	// this directory, a damaged disk) is never served: it is written again.
	cachePath := filepath.Join(tl.dir, ".tidemark", "gzip", "tile", "entries", "000.gz")
	for _, bad := range [][]byte{nil, first.body[:len(first.body)/2], gzipOf(t, bytes.ToUpper(raw))} {
		if err := os.WriteFile(cachePath, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		r := tl.get("/tile/entries/000", "Accept-Encoding", "gzip")
		if r.status != 200 || !bytes.Equal(gunzip(t, r.body), raw) {
			t.Errorf("with a bad cache file of %d bytes: %d, not the bundle", len(bad), r.status)
		}
	}
	if stored := tl.gzipServed("stored"); stored != 4 {
		t.Errorf("compressed and stored %v times, want 4 (once, then once per bad file)", stored)
	}

	// A partial bundle is compressed per request; without gzip, raw bytes.
	for range 2 {
		r := tl.get("/tile/entries/001.p/44", "Accept-Encoding", "gzip")
		if r.status != 200 || len(gunzip(t, r.body)) == 0 {
			t.Fatalf("partial bundle: %d %v", r.status, r.header)
		}
	}
	if partial := tl.gzipServed("partial"); partial != 2 {
		t.Errorf("partial bundles compressed %v times, want 2", partial)
	}
	if r := tl.get("/tile/entries/000"); r.status != 200 || r.header.Get("Content-Encoding") != "" || !bytes.Equal(r.body, raw) {
		t.Errorf("without Accept-Encoding: %d %v", r.status, r.header)
	}
	if n, _ := filepath.Glob(filepath.Join(tl.dir, ".tidemark", "gzip", "tile", "entries", ".tmp-*")); len(n) != 0 {
		t.Errorf("temporary files left behind: %v", n)
	}
}

func gzipOf(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// TestBundleCRCIsRemembered: a bundle's CRC-32 is read once per process,
// and again when its file is not the one it was read from.
func TestBundleCRCIsRemembered(t *testing.T) {
	c := newBundleGzips(t.TempDir(), nil)
	path := filepath.Join(t.TempDir(), "000")
	stat := func(b []byte, mtime time.Time) (*os.File, fs.FileInfo) {
		if b != nil {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return f, fi
	}
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := []byte("bundle a")
	f, fi := stat(a, t0)
	if got, err := c.bundleCRC(f, fi, 7); err != nil || got != crc32.ChecksumIEEE(a) {
		t.Fatalf("first read: %08x, %v", got, err)
	}
	// Remembered: not read again (the file is closed).
	f.Close()
	if got, err := c.bundleCRC(f, fi, 7); err != nil || got != crc32.ChecksumIEEE(a) {
		t.Fatalf("remembered: %08x, %v", got, err)
	}
	// Another file (same size, another time): read again.
	b := []byte("bundle b")
	f, fi = stat(b, t0.Add(time.Second))
	if got, err := c.bundleCRC(f, fi, 7); err != nil || got != crc32.ChecksumIEEE(b) {
		t.Fatalf("changed file: %08x, %v, want %08x", got, err, crc32.ChecksumIEEE(b))
	}
	// Another index, far beyond: its own entry.
	if got, err := c.bundleCRC(f, fi, 70000); err != nil || got != crc32.ChecksumIEEE(b) {
		t.Fatalf("index 70000: %08x, %v", got, err)
	}
}
