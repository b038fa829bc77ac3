package log

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// bundleGzips keeps the gzip of each full entry bundle on disk, beside the
// data in DIR/.tidemark/gzip/<bundle path>.gz, so that a bundle is
// compressed once, not on every read. A full bundle (no .p/) never changes,
// and auditors read every bundle of the tree, again and again: an in-memory
// cache would have to hold the whole tree to help them, or be bounded and
// miss; on disk it costs about a third of the bundles' size, survives
// restarts, and grows with the log as the log itself does. Partial bundles
// are compressed per request: they are read while the tree is young and
// are soon replaced by full ones.
//
// A cached file is written to a temporary file, synced, and renamed into
// place, so that a crash leaves it whole or absent; before it is served,
// its gzip trailer (the CRC-32 and size of the uncompressed data) must match
// the bundle read from the tiles. A file that does not match (another log
// once in this directory, a damaged disk) is written again. A cache that
// cannot be written (a full disk) is not an error: the bundle is compressed
// for the request, as before.
//
// The bundle's CRC-32 is computed once per process and remembered by bundle
// index, with the size and modification time of the bundle's file it was
// computed from (a full bundle never changes; a file that did is read
// again): an auditor reads every bundle on every pass, and reading and
// summing each 150 KB bundle again was a quarter of the log's CPU per
// request. The cached file's trailer is still read on every request.
type bundleGzips struct {
	dir      string // DIR/.tidemark/gzip
	log      *slog.Logger
	served   *prometheus.CounterVec // by result: cached, stored, uncached, partial
	lastWarn atomic.Int64           // unix seconds of the last warning, to keep a full disk from flooding the log

	mu   sync.Mutex
	crcs []uint64 // by bundle index: the bundle's CRC-32 << 32 | bundleStamp of its file; 0 not known
}

func newBundleGzips(dataDir string, logger *slog.Logger) *bundleGzips {
	return &bundleGzips{
		dir: filepath.Join(dataDir, stateDir, "gzip"),
		log: logger,
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_log_entry_bundle_gzip_total",
			Help: "Entry bundles served gzipped, by result: cached (a full bundle from the cache), stored (a full bundle compressed and cached), uncached (a full bundle compressed because the cache could not be written), partial (a partial bundle, compressed per request).",
		}, []string{"result"}),
	}
}

// serve writes the gzip of entry bundle index (the file raw, described by
// fi, at the tiles path path) to w: from the cache when full, else
// compressed now.
func (c *bundleGzips) serve(w http.ResponseWriter, raw *os.File, fi fs.FileInfo, path string, index uint64, full bool) {
	w.Header().Set("Content-Encoding", "gzip")
	if !full {
		c.served.WithLabelValues("partial").Inc()
		compressTo(w, raw, gzip.BestSpeed)
		return
	}
	rawSize := fi.Size()
	crc := func() (uint32, error) { return c.bundleCRC(raw, fi, index) }
	cached := filepath.Join(c.dir, filepath.FromSlash(path)) + ".gz"
	result := "cached"
	gz, size, err := openCachedGzip(cached, rawSize, crc)
	if err != nil {
		result = "stored"
		if err = storeGzip(cached, raw); err == nil {
			gz, size, err = openCachedGzip(cached, rawSize, crc)
		}
	}
	if err != nil {
		c.warn("entry bundle gzip not cached: compressing it for this request", "path", path, "err", err)
		c.served.WithLabelValues("uncached").Inc()
		if _, err := raw.Seek(0, io.SeekStart); err == nil {
			compressTo(w, raw, gzip.BestSpeed)
		}
		return
	}
	defer gz.Close()
	c.served.WithLabelValues(result).Inc()
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	_, _ = io.Copy(w, gz)
}

func (c *bundleGzips) warn(msg string, args ...any) {
	now := time.Now().Unix()
	if last := c.lastWarn.Load(); now-last < 60 || !c.lastWarn.CompareAndSwap(last, now) {
		return
	}
	c.log.Warn(msg, args...)
}

// compressTo streams r gzipped to w.
func compressTo(w io.Writer, r io.Reader, level int) {
	zw, _ := gzip.NewWriterLevel(w, level)
	_, _ = io.Copy(zw, r)
	_ = zw.Close()
}

// bundleStamp identifies the state of a bundle's file: its size and
// modification time, folded into 32 bits, never 0.
func bundleStamp(fi fs.FileInfo) uint64 {
	h := fnv.New32a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(fi.Size()))
	binary.LittleEndian.PutUint64(b[8:], uint64(fi.ModTime().UnixNano()))
	h.Write(b[:])
	return uint64(h.Sum32()) | 1
}

// bundleCRC returns the CRC-32 of entry bundle index, the file raw: the one
// remembered if it was computed from the file as fi describes it, else
// read and remembered.
func (c *bundleGzips) bundleCRC(raw *os.File, fi fs.FileInfo, index uint64) (uint32, error) {
	stamp := bundleStamp(fi)
	c.mu.Lock()
	if index < uint64(len(c.crcs)) {
		if v := c.crcs[index]; v != 0 && v&0xffffffff == stamp {
			c.mu.Unlock()
			return uint32(v >> 32), nil
		}
	}
	c.mu.Unlock()
	if _, err := raw.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	crc := crc32.NewIEEE()
	if _, err := io.Copy(crc, raw); err != nil {
		return 0, err
	}
	sum := crc.Sum32()
	c.mu.Lock()
	if index >= uint64(len(c.crcs)) {
		c.crcs = append(c.crcs, make([]uint64, int(index)+1-len(c.crcs))...)
	}
	c.crcs[index] = uint64(sum)<<32 | stamp
	c.mu.Unlock()
	return sum, nil
}

// openCachedGzip opens the cached gzip of a bundle of rawSize bytes whose
// CRC-32 crc returns, or fails if it is missing or is not the gzip of that
// bundle: its gzip trailer must hold the bundle's CRC-32 and size.
func openCachedGzip(path string, rawSize int64, crc func() (uint32, error)) (*os.File, int64, error) {
	gz, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	ok := false
	defer func() {
		if !ok {
			gz.Close()
		}
	}()
	fi, err := gz.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := fi.Size()
	// A gzip member: a 10-byte header, the deflate stream, an 8-byte trailer.
	var head [3]byte
	var trailer [8]byte
	if size < 18 {
		return nil, 0, fmt.Errorf("%s is %d bytes, too short for gzip", path, size)
	}
	if _, err := gz.ReadAt(head[:], 0); err != nil {
		return nil, 0, err
	}
	if _, err := gz.ReadAt(trailer[:], size-8); err != nil {
		return nil, 0, err
	}
	if !bytes.Equal(head[:], []byte{0x1f, 0x8b, 8}) {
		return nil, 0, fmt.Errorf("%s is not gzip", path)
	}
	wantCRC, wantSize := binary.LittleEndian.Uint32(trailer[:4]), binary.LittleEndian.Uint32(trailer[4:])
	if wantSize != uint32(rawSize) {
		return nil, 0, fmt.Errorf("%s holds %d bytes, the bundle %d", path, wantSize, rawSize)
	}
	sum, err := crc()
	if err != nil {
		return nil, 0, err
	}
	if sum != wantCRC {
		return nil, 0, fmt.Errorf("%s is not the gzip of the bundle (CRC-32 %08x, the bundle's %08x)", path, wantCRC, sum)
	}
	ok = true
	return gz, size, nil
}

// storeGzip writes the gzip of raw to path: to a temporary file beside it,
// synced, then renamed, so that path is whole or absent.
func storeGzip(path string, raw *os.File) (err error) {
	if _, err := raw.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	zw, _ := gzip.NewWriterLevel(tmp, gzip.DefaultCompression)
	if _, err := io.Copy(zw, raw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
