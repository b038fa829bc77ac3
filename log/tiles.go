package log

import (
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/transparency-dev/tessera/api/layout"
)

// Cache-Control values from C2SP tlog-tiles: the checkpoint is mutable and
// must not be cached beyond a few seconds; tiles and bundles are immutable.
const (
	checkpointCache = "no-cache"
	tileCache       = "public, max-age=31536000, immutable"
	privateCache    = "private, max-age=31536000, immutable"
)

// handleCheckpoint serves GET /checkpoint.
func (s *Server) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	var b []byte
	var err error
	if s.backend.kind == "posix" {
		b, err = os.ReadFile(filepath.Join(s.cfg.Dir, layout.CheckpointPath))
	} else {
		b, err = s.reader.ReadCheckpoint(r.Context())
	}
	if errors.Is(err, fs.ErrNotExist) || (err == nil && b == nil) {
		http.Error(w, "no checkpoint yet", http.StatusNotFound)
		return
	}
	if err != nil {
		if r.Context().Err() == nil { // not a client that went away
			s.fail(w, r, err)
		}
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", checkpointCache)
	_, _ = w.Write(b)
}

// handleTile serves GET /tile/<L>/<N>[.p/<W>] and /tile/entries/<N>[.p/<W>].
// The path is parsed and formatted again: anything but the canonical form
// is a 404, and the file read is named by the parsed numbers, never by the
// request, so nothing outside the log's tiles can be reached.
func (s *Server) handleTile(w http.ResponseWriter, r *http.Request) {
	rest := mux.Vars(r)["rest"]
	level, index, ok := strings.Cut(rest, "/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	entries := level == "entries"
	if entries {
		level = "0"
	}
	l, n, p, err := layout.ParseTileLevelIndexPartial(level, index)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	var path string
	if entries {
		path = layout.EntriesPath(n, p)
	} else {
		path = layout.TilePath(l, n, p)
	}
	if "tile/"+rest != path || !s.withinTree(l, n, p) {
		http.NotFound(w, r)
		return
	}
	cache := tileCache
	// A commitment log's bundles hold commitments and erasures, no event
	// content: they are public, so that anyone can check the tree.
	if entries && s.readTokens != nil && s.cfg.Leaves != LeavesCommitment {
		if !s.readAllowed(w, r, "entry bundles") {
			return
		}
		cache = privateCache
	}
	if s.backend.kind != "posix" {
		s.serveStoredTile(w, r, entries, l, n, p, cache)
		return
	}
	f, err := os.Open(filepath.Join(s.cfg.Dir, filepath.FromSlash(path)))
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", cache)
	if entries {
		h.Add("Vary", "Accept-Encoding")
		// tlog-tiles: entry bundles SHOULD be compressed at the HTTP layer.
		if acceptsGzip(r) {
			s.gzips.serve(w, f, fi, path, n, p == 0)
			return
		}
	}
	// Streamed from the file: a bundle can be 16 MiB (256 leaves of 64 KiB).
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	_, _ = io.Copy(w, f)
}

// withinTree reports whether the tile (level, index, partial width p; 0 for
// a full tile) lies within the integrated tree. A batch that failed may
// have written bundles and tiles past it, which the next batch overwrites
// with other contents: served with "immutable" cache headers, a cache in
// front of the log would keep the wrong bytes forever, and verifiers would
// see a log that changed its history. Such files are not served. The size
// is remembered and read again only when a request is past it.
func (s *Server) withinTree(level, index uint64, p uint8) bool {
	width := uint64(p)
	if width == 0 {
		width = layout.TileWidth
	}
	if level >= 8 || index >= 1<<48 {
		return false
	}
	need := index*layout.TileWidth + width // nodes at this level the tile needs
	if need <= s.knownSize.Load()>>(8*level) {
		return true
	}
	size, err := s.integratedSize()
	if err != nil {
		return false
	}
	for {
		known := s.knownSize.Load()
		if size <= known || s.knownSize.CompareAndSwap(known, size) {
			break
		}
	}
	return need <= size>>(8*level)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(name) == "gzip" && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// serveStoredTile serves a tile or entry bundle read through Tessera's
// reader (MySQL, S3), exactly as tlog-tiles names it: a driver that returns
// more than the partial width asked for is trimmed to it.
func (s *Server) serveStoredTile(w http.ResponseWriter, r *http.Request, entries bool, l, n uint64, p uint8, cache string) {
	var b []byte
	var err error
	if entries {
		b, err = s.reader.ReadEntryBundle(r.Context(), n, p)
	} else {
		b, err = s.reader.ReadTile(r.Context(), l, n, p)
	}
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		if r.Context().Err() == nil {
			s.fail(w, r, err)
		}
		return
	}
	if s.backend.trimsReads {
		var ok bool
		if entries {
			b, ok = trimBundle(b, p)
		} else {
			b, ok = trimTile(b, p)
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", cache)
	if entries {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			h.Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(b)
			_ = zw.Close()
			return
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}
