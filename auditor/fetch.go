package auditor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api/layout"
)

// Bounds on what is read from a log: a hash tile is 256 hashes, an entry
// bundle 256 entries of at most 65,535 bytes each with a 2-byte length.
const (
	maxTileSize   = layout.TileWidth * checkpoint.HashSize
	maxBundleSize = layout.EntryBundleWidth * (2 + checkpoint.MaxLeafSize)
)

// fetcher reads a log's tlog-tiles resources over HTTP.
type fetcher struct {
	base  *url.URL // ends in "/"
	hc    *http.Client
	token string // bearer token for entry bundles
	gzip  bool   // ask for gzip-compressed entry bundles
}

// gzipReaders are reused from one bundle to the next. klauspost's inflater
// (a drop-in for compress/gzip, CRC-32 and size checked at the end alike)
// decodes a bundle in about two thirds of the standard library's time, and
// decoding is the biggest cost of a full check over gzip.
var gzipReaders sync.Pool

// get fetches base+path into buf (reset first) and returns its bytes, which
// alias buf. A 404 wraps os.ErrNotExist.
func (f *fetcher) get(ctx context.Context, path string, buf *bytes.Buffer, limit int64, entries bool) ([]byte, error) {
	u := f.base.JoinPath(path).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if entries && f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	if entries && f.gzip {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %w", u, os.ErrNotExist)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("GET %s: %s (entry bundles of this log need a read token: --read-token-file)", u, resp.Status)
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		if err := zr.Reset(resp.Body); err != nil {
			return nil, fmt.Errorf("GET %s: bad gzip: %w", u, err)
		}
		defer gzipReaders.Put(zr)
		body = zr
	}
	buf.Reset()
	if resp.ContentLength > 0 && resp.ContentLength <= limit && body == resp.Body {
		buf.Grow(int(resp.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if n > limit {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", u, limit)
	}
	return buf.Bytes(), nil
}

// checkpoint fetches the log's signed checkpoint.
func (f *fetcher) checkpoint(ctx context.Context) ([]byte, error) {
	var buf bytes.Buffer
	b, err := f.get(ctx, layout.CheckpointPath, &buf, checkpoint.MaxCheckpointSize, false)
	return bytes.Clone(b), err
}

// partialOrFull fetches a partial resource, falling back to the full one
// when the partial is gone (the tree has grown past it; tlog-tiles lets a
// log delete it then), and trims the full one to the partial width.
func partialOrFull(p uint8, fetch func(p uint8) ([]byte, error)) ([]byte, error) {
	if p == 0 {
		return fetch(0)
	}
	b, err := fetch(p)
	if errors.Is(err, os.ErrNotExist) {
		return fetch(0)
	}
	return b, err
}

// tile fetches the hash tile (level, index) as it is in a tree of size
// treeSize: partial when the tree ends inside it. The result holds exactly
// the tile's hashes in that tree.
func (f *fetcher) tile(ctx context.Context, level, index, treeSize uint64, buf *bytes.Buffer) ([]byte, error) {
	p := layout.PartialTileSize(level, index, treeSize)
	b, err := partialOrFull(p, func(p uint8) ([]byte, error) {
		return f.get(ctx, layout.TilePath(level, index, p), buf, maxTileSize, false)
	})
	if err != nil {
		return nil, err
	}
	want := layout.TileWidth * checkpoint.HashSize
	if p != 0 {
		want = int(p) * checkpoint.HashSize
	}
	if len(b) < want || len(b)%checkpoint.HashSize != 0 {
		return nil, &tileError{level, index, fmt.Sprintf("is %d bytes, want %d for tree size %d", len(b), want, treeSize)}
	}
	return b[:want], nil
}

// tileError is a tile that cannot belong to the tree it should.
type tileError struct {
	level, index uint64
	msg          string
}

func (e *tileError) Error() string {
	return fmt.Sprintf("hash tile %s %s", layout.TilePath(e.level, e.index, 0), e.msg)
}

// tilesAt returns a client.TileFetcherFunc that reads tiles as they are in a
// tree of size treeSize, whatever width the caller asks for: Tessera's proof
// builder asks for the width of the size it was made for, which a log may
// since have replaced with a wider tile.
func (f *fetcher) tilesAt(treeSize uint64) func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		var buf bytes.Buffer
		b, err := f.tile(ctx, level, index, treeSize, &buf)
		if err != nil {
			return nil, err
		}
		if p != 0 && len(b) > int(p)*checkpoint.HashSize {
			b = b[:int(p)*checkpoint.HashSize]
		}
		return bytes.Clone(b), nil
	}
}

// bundle fetches entry bundle index as it is in a tree of size treeSize.
func (f *fetcher) bundle(ctx context.Context, index, treeSize uint64, buf *bytes.Buffer) ([]byte, error) {
	p := layout.PartialTileSize(0, index, treeSize)
	return partialOrFull(p, func(p uint8) ([]byte, error) {
		return f.get(ctx, layout.EntriesPath(index, p), buf, maxBundleSize, true)
	})
}

// getWitness fetches a witness's latest cosigned checkpoint for origin:
// GET <url>/<hex SHA-256 of origin>/checkpoint.
func getWitness(ctx context.Context, hc *http.Client, witnessURL, origin string) ([]byte, error) {
	u, err := url.Parse(witnessURL)
	if err != nil {
		return nil, err
	}
	f := &fetcher{base: u, hc: hc}
	var buf bytes.Buffer
	b, err := f.get(ctx, originHash(origin)+"/checkpoint", &buf, checkpoint.MaxCheckpointSize, false)
	return bytes.Clone(b), err
}
