package log

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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
type bundleGzips struct {
	dir      string // DIR/.tidemark/gzip
	log      *slog.Logger
	served   *prometheus.CounterVec // by result: cached, stored, uncached, partial
	lastWarn atomic.Int64           // unix seconds of the last warning, to keep a full disk from flooding the log
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

// serve writes the gzip of the bundle raw (of rawSize bytes, at the tiles
// path path) to w: from the cache when full, else compressed now.
func (c *bundleGzips) serve(w http.ResponseWriter, raw *os.File, rawSize int64, path string, full bool) {
	w.Header().Set("Content-Encoding", "gzip")
	if !full {
		c.served.WithLabelValues("partial").Inc()
		compressTo(w, raw, gzip.BestSpeed)
		return
	}
	cached := filepath.Join(c.dir, filepath.FromSlash(path)) + ".gz"
	result := "cached"
	gz, size, err := openCachedGzip(cached, raw, rawSize)
	if err != nil {
		result = "stored"
		if err = storeGzip(cached, raw); err == nil {
			gz, size, err = openCachedGzip(cached, raw, rawSize)
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

// openCachedGzip opens the cached gzip of raw, or fails if it is missing or
// is not the gzip of raw: its gzip trailer must hold raw's CRC-32 and size.
func openCachedGzip(path string, raw *os.File, rawSize int64) (*os.File, int64, error) {
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
	if _, err := raw.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	crc := crc32.NewIEEE()
	if _, err := io.Copy(crc, raw); err != nil {
		return nil, 0, err
	}
	if crc.Sum32() != wantCRC {
		return nil, 0, fmt.Errorf("%s is not the gzip of the bundle (CRC-32 %08x, the bundle's %08x)", path, wantCRC, crc.Sum32())
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
