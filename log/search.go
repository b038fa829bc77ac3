package log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/search"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// GET /v1/search finds events by who, what, on what, with what outcome,
// when, and by words (see internal/search). The index is built from the
// log's own entry bundles by a goroutine beside the appender, so that
// ingest never waits for it; "complete_to" says how far it has got. Every
// hit is read back from the log's entry bundles and checked against the
// query before it is answered, so the index can make the log miss an event
// but never answer with one that does not match; each can be proven with
// GET /v1/receipt/{index}.

// searchFile is the search index of a POSIX log, in stateDir.
const searchFile = "search.db"

// searchSlots bounds the searches answered at once: each may hold an
// entry bundle (up to 16 MiB of maximal leaves) and a query's worth of
// SQLite pages. Past it, 503 with Retry-After.
const searchSlots = 8

// maxSearchBytes bounds the events of one answer, and maxSearchRead the
// entry bundles read for it (candidates the leaves refuse cost reads but
// add nothing): past either, the answer stops early and its "next" goes
// on from there.
const maxSearchBytes = 4 << 20

var maxSearchRead = 64 << 20 // a variable for tests

// openSearch opens the search index and starts its indexer. A log whose
// index cannot be opened runs without search (503), and says so.
func (s *Server) openSearch() {
	if s.cfg.NoSearch {
		return
	}
	var st *search.Store
	var err error
	if s.backend.db != nil {
		st, err = search.OpenMySQL(s.ctx, s.backend.db)
	} else {
		st, err = search.OpenSQLite(s.ctx, filepath.Join(s.cfg.Dir, stateDir, searchFile))
	}
	if err != nil {
		s.log.Error("search is off: couldn't open the search index (delete it to build it again from the log)", "err", err)
		return
	}
	var src search.Source = searchSource{s}
	if s.payloads != nil {
		src = &openedSearchSource{s: s, keys: map[uint64]payloadKey{}}
	}
	ix, err := search.NewIndexer(st, src, s.cfg.SearchMapping, s.log.With("component", "search"), s.cfg.Registry)
	if err != nil {
		st.Close()
		s.log.Error("search is off", "err", err)
		return
	}
	s.search = st
	s.searching = make(chan struct{}, searchSlots)
	s.searchDone = make(chan struct{})
	go func() {
		defer close(s.searchDone)
		ix.Run(s.ctx)
	}()
}

// closeSearch stops the indexer (s.ctx is cancelled) and closes the index.
func (s *Server) closeSearch() error {
	if s.search == nil {
		return nil
	}
	<-s.searchDone
	return s.search.Close()
}

// searchSource reads the log for the indexer.
type searchSource struct{ s *Server }

func (src searchSource) Size(ctx context.Context) (uint64, error) { return src.s.integratedSize() }
func (src searchSource) Bundle(ctx context.Context, i uint64, p uint8) ([]byte, error) {
	return src.s.reader.ReadEntryBundle(ctx, i, p)
}

// openedSearchSource reads a commitment log for the indexer: each
// commitment leaf is opened from the payload store (openedBundle), and the
// indexer asks afterwards which of the entries it indexed were erased
// meanwhile (search.Vanishing). Used by the indexer's one goroutine.
type openedSearchSource struct {
	s    *Server
	keys map[uint64]payloadKey // the entries Bundle opened, by index
}

func (src *openedSearchSource) Size(ctx context.Context) (uint64, error) {
	return src.s.integratedSize()
}

func (src *openedSearchSource) Bundle(ctx context.Context, i uint64, p uint8) ([]byte, error) {
	raw, err := src.s.reader.ReadEntryBundle(ctx, i, p)
	if err != nil {
		return nil, err
	}
	var b api.EntryBundle
	if err := b.UnmarshalText(raw); err != nil {
		return nil, err
	}
	if len(src.keys) > 1<<16 {
		clear(src.keys) // a chunk that failed: Vanished reads what it misses
	}
	for j, e := range b.Entries {
		if !looksCommitment(e) {
			continue
		}
		if c, err := checkpoint.ParseCommitmentLeaf(e); err == nil {
			src.keys[i*layout.EntryBundleWidth+uint64(j)] = payloadKeyOf(c)
		}
	}
	return src.s.openBundle(ctx, i, raw)
}

// Vanished returns those of idxs whose payload rows are gone.
func (src *openedSearchSource) Vanished(ctx context.Context, idxs []uint64) ([]uint64, error) {
	defer clear(src.keys)
	keys := make([]payloadKey, 0, len(idxs))
	var gone []uint64
	for _, idx := range idxs {
		k, ok := src.keys[idx]
		if !ok {
			_, o, err := src.s.openingAt(ctx, idx)
			if err != nil {
				return nil, err
			}
			if o == nil {
				gone = append(gone, idx)
			}
			continue
		}
		keys = append(keys, k)
	}
	rows, err := src.s.payloads.get(ctx, keys)
	if err != nil {
		return nil, err
	}
	for _, idx := range idxs {
		if k, ok := src.keys[idx]; ok {
			if _, there := rows[k]; !there {
				gone = append(gone, idx)
			}
		}
	}
	return gone, nil
}

// SearchResult is one hit of GET /v1/search.
type SearchResult struct {
	Index    uint64          `json:"index"`
	Received string          `json:"received"`
	Source   string          `json:"source"`
	Event    json.RawMessage `json:"event"`
}

// SearchAnswer is the answer of GET /v1/search.
type SearchAnswer struct {
	Results []SearchResult `json:"results"`
	// Next, when set, is the cursor of the next (older) page.
	Next string `json:"next,omitempty"`
	// CompleteTo is the tree size up to which the index is complete.
	CompleteTo uint64 `json:"complete_to"`
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request) {
	if !s.readAllowed(w, r, "search") {
		return
	}
	if s.search == nil {
		s.fail(w, r, errorf(http.StatusServiceUnavailable, "search_off", "this log has no search index (it runs with --search=false, or its index could not be opened: see its logs)"))
		return
	}
	q, err := search.ParseQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "%s", err.Error()))
		return
	}
	select {
	case s.searching <- struct{}{}:
		defer func() { <-s.searching }()
	default:
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, errorf(http.StatusServiceUnavailable, "busy", "%d searches are running: retry in a second", searchSlots))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	complete, err := s.search.CompleteTo(ctx)
	if err != nil {
		s.fail(w, r, fmt.Errorf("couldn't read the search index: %w", err))
		return
	}
	ans := SearchAnswer{Results: []SearchResult{}, CompleteTo: complete}
	cands, more, err := s.search.Find(ctx, q, q.Limit)
	if err != nil {
		s.fail(w, r, fmt.Errorf("couldn't search the index: %w", err))
		return
	}
	leaves := leafReader{s: s, ctx: ctx}
	bytesOut := 0
	for n, idx := range cands {
		if bytesOut >= maxSearchBytes {
			ans.Next, more = strconv.FormatUint(cands[n-1], 10), false
			break
		}
		entry, err := leaves.read(idx)
		if errors.Is(err, errBeyondTree) {
			continue // an index of another log, or a damaged one: the log decides
		}
		if errors.Is(err, errReadEnough) {
			ans.Next, more = strconv.FormatUint(cands[n-1], 10), false
			break
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if s.payloads != nil && looksCommitment(entry) {
			opened, err := s.openEntriesAs(ctx, only(idx), [][]byte{entry}, badSkip)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			if opened[0] == nil {
				continue // erased: its event is gone
			}
			entry = opened[0].Leaf
		}
		row, ok := search.RowOf(idx, entry, s.cfg.SearchMapping)
		if !ok || !q.Matches(row.Received, row.Source, row.Fields) {
			continue // the index is stale or was changed: the leaf decides
		}
		l, _ := checkpoint.ParseLeaf(entry)
		ans.Results = append(ans.Results, SearchResult{
			Index:    idx,
			Received: l.Received.UTC().Format(time.RFC3339Nano),
			Source:   l.Source,
			Event:    json.RawMessage(l.Event),
		})
		bytesOut += len(entry)
	}
	if more {
		ans.Next = strconv.FormatUint(cands[len(cands)-1], 10)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, ans)
}

// errReadEnough: one answer has read maxSearchRead bytes of bundles.
var errReadEnough = errors.New("read enough bundles for one answer")

// errBeyondTree: the search index names an entry the tree does not hold.
var errBeyondTree = errors.New("no such entry in the tree")

// leafReader reads single entries, a bundle at a time.
type leafReader struct {
	s           *Server
	ctx         context.Context
	size        uint64
	bundle      uint64
	have        bool
	b           api.EntryBundle
	bundleBytes int // bytes of bundles read
}

func (lr *leafReader) read(idx uint64) ([]byte, error) {
	if lr.size == 0 {
		n, err := lr.s.integratedSize()
		if err != nil {
			return nil, fmt.Errorf("couldn't read the tree size: %w", err)
		}
		lr.size = n
	}
	if idx >= lr.size {
		return nil, errBeyondTree
	}
	bi := idx / layout.EntryBundleWidth
	if !lr.have || lr.bundle != bi {
		if lr.bundleBytes >= maxSearchRead {
			return nil, errReadEnough
		}
		raw, err := lr.s.reader.ReadEntryBundle(lr.ctx, bi, layout.PartialTileSize(0, bi, lr.size))
		if err != nil {
			return nil, fmt.Errorf("couldn't read entry bundle %d: %w", bi, err)
		}
		lr.bundleBytes += len(raw)
		lr.b = api.EntryBundle{}
		if err := lr.b.UnmarshalText(raw); err != nil {
			return nil, fmt.Errorf("couldn't parse entry bundle %d: %w", bi, err)
		}
		lr.bundle, lr.have = bi, true
	}
	j := idx % layout.EntryBundleWidth
	if j >= uint64(len(lr.b.Entries)) {
		return nil, fmt.Errorf("entry bundle %d has no entry %d", bi, idx)
	}
	return bytes.Clone(lr.b.Entries[j]), nil
}

// mayRead says whether a request may read what the entries hold: the log
// has no read tokens, or the request carries one of them. It answers
// nothing (readAllowed refuses).
func (s *Server) mayRead(r *http.Request) bool {
	if s.readTokens == nil {
		return true
	}
	tok, ok := bearer(r)
	if !ok {
		return false
	}
	_, ok = s.readTokens.Lookup(tok)
	return ok
}

// readAllowed checks the read token of a request for what the entries
// hold (bundles, receipts, search), when the log has read tokens; it
// answers the request and returns false when the token is missing or
// unknown.
func (s *Server) readAllowed(w http.ResponseWriter, r *http.Request, what string) bool {
	if s.readTokens == nil {
		return true
	}
	tok, ok := bearer(r)
	if !ok {
		s.fail(w, r, errorf(http.StatusUnauthorized, "unauthenticated", "%s of this log need a read token: send \"Authorization: Bearer <token>\"", what))
		return false
	}
	if _, ok := s.readTokens.Lookup(tok); !ok {
		s.fail(w, r, errorf(http.StatusForbidden, "forbidden", "the read token is not one this log knows"))
		return false
	}
	return true
}
