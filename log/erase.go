package log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/search"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// Erasure removes what a commitment log's entry holds while every proof
// stays valid: the commitment leaf stays in the tree, and what it commits
// to (the salt and the event leaf, in the payload store), the search
// index's row and its words are deleted. The log says so itself: an
// erasure leaf (checkpoint.Erasure), appended first, names the entries,
// the reason and who erased them (an admin token's name, or "retention"),
// so an auditor tells an erasure from tampering.
//
// The order is: append the erasure leaf, then delete (applyErasure), then
// take the deleted bytes out of SQLite's write-ahead logs (flush). A crash
// in between leaves a logged erasure not yet applied: every start, and
// every erasureRepairEvery after, re-applies the erasure leaves above the
// payload store's mark erasures_applied_to (repairErasures), which is
// raised past them once they are. Applying twice deletes nothing more.
// Erasures are serialised (payloadStore.lock): in one process, and across
// frontends sharing a MySQL database.

// RetentionSource is the source of the erasure leaves of --retention: no
// admin token may have that name.
const RetentionSource = "retention"

// maxEraseBody bounds the body of POST /v1/erase: an index and a reason of
// at most checkpoint.MaxErasureReason bytes, escaped.
const maxEraseBody = 8 << 10

// erasureRepairEvery is how often erasure leaves above the mark are
// re-applied, which keeps the mark near the tree's size (so a start reads
// little) and repairs another frontend's crash.
const erasureRepairEvery = time.Minute

// eraseLockWait is how long an erasure waits for another to finish.
const eraseLockWait = 30 * time.Second

// erasureMetrics count what commitment logs store and erase.
type erasureMetrics struct {
	erased       *prometheus.CounterVec
	erasures     *prometheus.CounterVec
	payloadWrite prometheus.Histogram
	badPayloads  prometheus.Counter
	repaired     prometheus.Counter
}

func newErasureMetrics(reg *prometheus.Registry) (*erasureMetrics, error) {
	m := &erasureMetrics{
		erased: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_log_erased_entries_total",
			Help: "Payloads (event and salt) deleted by erasures this process applied, by cause (admin: POST /v1/erase; retention; repair: erasure leaves re-applied at start or by the repair loop; orphan: rows retention found no leaf for).",
		}, []string{"cause"}),
		erasures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_log_erasures_total",
			Help: "Erasure leaves this process appended, by cause (admin, retention).",
		}, []string{"cause"}),
		payloadWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_log_payload_write_seconds",
			Help:    "Time a request waits for its events' payloads (salts and event leaves) to be committed to the payload store, before its commitment leaves are appended.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		badPayloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_log_payload_mismatch_total",
			Help: "Payload rows read that did not open their commitment leaf: the payload store was changed. Alert on any.",
		}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_log_erasures_repaired_total",
			Help: "Erasure leaves found above the applied mark and applied again (a crash between an erasure's append and its deletes, or another frontend's).",
		}),
	}
	for _, c := range []string{"admin", "retention", "repair", "orphan"} {
		m.erased.WithLabelValues(c)
	}
	for _, c := range []string{"admin", "retention"} {
		m.erasures.WithLabelValues(c)
	}
	if err := registerAll(reg, m.erased, m.erasures, m.payloadWrite, m.badPayloads, m.repaired); err != nil {
		return nil, err
	}
	return m, nil
}

// EraseRequest is the body of POST /v1/erase.
type EraseRequest struct {
	Index  *uint64 `json:"index"`
	Reason string  `json:"reason"`
}

// EraseAnswer is the answer of POST /v1/erase.
type EraseAnswer struct {
	Index        uint64 `json:"index"`
	ErasureIndex uint64 `json:"erasure_index"`
}

// handleErase serves POST /v1/erase.
func (s *Server) handleErase(w http.ResponseWriter, r *http.Request) {
	admin, err := s.authenticateAdmin(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := readEraseRequest(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.payloads == nil {
		s.fail(w, r, errorf(http.StatusConflict, "not_commitment", "this log writes event leaves (--leaves event): its entries hold their events and cannot be erased; only a log created with --leaves commitment can erase"))
		return
	}
	if err := s.acceptingWrites(); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	unlock, err := s.payloads.lock(ctx, eraseLockWait)
	if err != nil {
		if errors.Is(err, errLockBusy) {
			e := errorf(http.StatusServiceUnavailable, "busy", "another erasure has been running for %s: retry", eraseLockWait)
			e.retryAfter = 5
			s.fail(w, r, e)
			return
		}
		s.fail(w, r, fmt.Errorf("couldn't take the erasure lock: %w", err))
		return
	}
	defer unlock()
	// From here the erasure runs to its end even if the client goes away.
	ctx = context.WithoutCancel(ctx)
	index := *req.Index
	size, err := s.integratedSize()
	if err != nil {
		s.fail(w, r, fmt.Errorf("couldn't read the tree size: %w", err))
		return
	}
	if index >= size {
		s.fail(w, r, errorf(http.StatusNotFound, "not_found", "there is no entry %d: the log has %d entries", index, size))
		return
	}
	leaf, err := s.readLeaf(ctx, index, size)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if checkpoint.KindOf(leaf) != checkpoint.KindCommitment {
		s.fail(w, r, errorf(http.StatusConflict, "not_commitment", "entry %d is not a commitment leaf (it is %s): only an event's commitment can be erased", index, kindName(checkpoint.KindOf(leaf))))
		return
	}
	opened, err := s.openEntriesAs(ctx, only(index), [][]byte{leaf}, badServe)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if opened[0] == nil {
		s.fail(w, r, errorf(http.StatusConflict, "already_erased", "entry %d is erased already: its event and salt are gone (the erasure leaf that covers it says when and why)", index))
		return
	}
	e := checkpoint.Erasure{Received: s.stamps.next(1)[0], Source: admin, Entries: []checkpoint.IndexRange{{From: index, To: index + 1}}, Reason: req.Reason}
	eidx, err := s.appendErasure(ctx, e, "admin")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.applyErasure(ctx, eidx, e, "admin"); err != nil {
		s.log.Error("an erasure is logged but its deletes failed: it is applied again within a minute, and at the next start", "index", index, "erasure_index", eidx, "err", err)
		s.fail(w, r, errorf(http.StatusInternalServerError, "erase_incomplete", "the erasure of entry %d is logged (entry %d) but deleting its event failed; the log applies it again within a minute and at its next start: do not erase it again", index, eidx))
		return
	}
	s.log.Info("entry erased", "index", index, "erasure_index", eidx, "admin", admin, "reason", req.Reason)
	writeJSON(w, http.StatusOK, EraseAnswer{Index: index, ErasureIndex: eidx})
}

// authenticateAdmin returns the name of the request's admin token.
func (s *Server) authenticateAdmin(r *http.Request) (string, error) {
	tok, ok := bearer(r)
	if !ok {
		return "", errorf(http.StatusUnauthorized, "unauthenticated", "erasing needs an admin token: send \"Authorization: Bearer <token>\" with a token of the log's --admin-tokens file")
	}
	if s.cfg.AdminTokens == nil {
		return "", errorf(http.StatusUnauthorized, "unauthenticated", "this log has no --admin-tokens file: nobody may erase")
	}
	name, ok := s.cfg.AdminTokens.Lookup(tok)
	if !ok {
		return "", errorf(http.StatusUnauthorized, "unauthenticated", "the bearer token is not an admin token of this log (a writer's or a reader's token is not one): use a token of its --admin-tokens file")
	}
	return name, nil
}

// readEraseRequest reads and checks the body of POST /v1/erase.
func readEraseRequest(w http.ResponseWriter, r *http.Request) (EraseRequest, error) {
	var req EraseRequest
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEraseBody))
	if err != nil {
		return req, errorf(http.StatusBadRequest, "bad_request", "couldn't read the body (at most %d bytes): %v", maxEraseBody, err)
	}
	if !utf8.Valid(b) {
		return req, errorf(http.StatusBadRequest, "bad_request", "the body is not UTF-8: send {\"index\":N,\"reason\":\"...\"}")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return req, errorf(http.StatusBadRequest, "bad_request", "the body must be {\"index\":N,\"reason\":\"...\"}: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return req, errorf(http.StatusBadRequest, "bad_request", "the body must be one JSON object {\"index\":N,\"reason\":\"...\"}, with nothing after it")
	}
	switch {
	case req.Index == nil:
		return req, errorf(http.StatusBadRequest, "bad_request", "the body has no \"index\": send {\"index\":N,\"reason\":\"...\"}")
	case req.Reason == "":
		return req, errorf(http.StatusBadRequest, "bad_request", "the body has no \"reason\": an erasure is logged with why it was made")
	case len(req.Reason) > checkpoint.MaxErasureReason:
		return req, errorf(http.StatusBadRequest, "bad_request", "the reason is %d bytes; at most %d", len(req.Reason), checkpoint.MaxErasureReason)
	}
	return req, nil
}

// kindName names a leaf kind in messages.
func kindName(k checkpoint.LeafKind) string {
	switch k {
	case checkpoint.KindEvent:
		return "an event leaf"
	case checkpoint.KindCommitment:
		return "a commitment leaf"
	case checkpoint.KindErasure:
		return "an erasure leaf"
	}
	return "a raw entry, appended with /add"
}

// appendErasure appends the erasure leaf of e and returns its index once
// it is sequenced. The caller holds the erasure lock.
func (s *Server) appendErasure(ctx context.Context, e checkpoint.Erasure, cause string) (uint64, error) {
	leaf, err := checkpoint.AppendErasureLeaf(nil, e)
	if err != nil {
		return 0, fmt.Errorf("couldn't build the erasure leaf: %w", err)
	}
	indexes, errs := s.queue.append(ctx, []*tessera.Entry{tessera.NewEntry(leaf)})
	if errs[0] != nil {
		return 0, s.appendError(errs[0], []ingestEvent{{where: "the erasure leaf"}}, nil)
	}
	s.erasureMetrics.erasures.WithLabelValues(cause).Inc()
	if s.afterErasureAppend != nil {
		if err := s.afterErasureAppend(); err != nil {
			return indexes[0].Index, err
		}
	}
	return indexes[0].Index, nil
}

// applyErasure deletes what the entries e covers hold: their search rows
// and words first (found by the words of the event, which the payload
// still holds), then their payload rows; then it flushes the SQLite
// write-ahead logs. It reads the covered entries from the log (a row is
// found by its leaf), so it needs them integrated. eidx is e's own index.
func (s *Server) applyErasure(ctx context.Context, eidx uint64, e checkpoint.Erasure, cause string) error {
	size, err := s.integratedSize()
	if err != nil {
		return fmt.Errorf("couldn't read the tree size: %w", err)
	}
	var deleted, wordsLeft int64
	for _, rg := range e.Entries {
		to := min(rg.To, size, eidx)
		if rg.From >= to {
			continue
		}
		var idxs []uint64
		var keys []payloadKey
		flush := func() error {
			n, err := s.erasePayloads(ctx, idxs, keys)
			deleted += n
			idxs, keys = idxs[:0], keys[:0]
			return err
		}
		err := s.scanEntries(ctx, rg.From, to, size, func(idx uint64, entry []byte) error {
			if !looksCommitment(entry) {
				return nil
			}
			if c, err := checkpoint.ParseCommitmentLeaf(entry); err == nil {
				idxs, keys = append(idxs, idx), append(keys, payloadKeyOf(c))
			}
			if len(keys) >= 4096 {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return err
		}
		if s.search != nil {
			// Rows whose payloads were gone already (an earlier,
			// interrupted erasure): their words cannot be found.
			n, err := s.search.Erase(ctx, rg.From, to)
			if err != nil {
				return fmt.Errorf("couldn't delete the erased entries' search rows: %w", err)
			}
			wordsLeft += n
		}
	}
	if wordsLeft > 0 && s.backend.db == nil {
		s.log.Warn("erased entries had search rows but no payloads left to find their words by: the words stay in the search index (matching nothing) until `tidemark reindex` rebuilds it", "entries", wordsLeft, "erasure_index", eidx)
	}
	if err := s.payloads.flush(ctx); err != nil {
		return err
	}
	if s.search != nil {
		if err := s.search.Flush(ctx); err != nil {
			return fmt.Errorf("couldn't flush the search index's write-ahead log: %w", err)
		}
	}
	s.erasureMetrics.erased.WithLabelValues(cause).Add(float64(deleted))
	s.appliedErasures.Store(eidx, true)
	return nil
}

// erasePayloads erases the entries idxs, whose payload keys are keys: the
// search rows and words of those whose payloads remain, then the payloads.
// It returns how many payloads it deleted.
func (s *Server) erasePayloads(ctx context.Context, idxs []uint64, keys []payloadKey) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if s.search != nil {
		rows, err := s.payloads.get(ctx, keys)
		if err != nil {
			return 0, fmt.Errorf("couldn't read the payloads to erase: %w", err)
		}
		var srows []search.Row
		for i, k := range keys {
			p, ok := rows[k]
			if !ok {
				continue
			}
			// The row as the indexer made it, from the same event leaf.
			if r, ok := search.RowOf(idxs[i], p.leaf, s.cfg.SearchMapping); ok {
				srows = append(srows, r)
			}
		}
		if err := s.search.EraseRows(ctx, srows); err != nil {
			return 0, fmt.Errorf("couldn't delete the erased entries' search rows and words: %w", err)
		}
	}
	n, err := s.payloads.delete(ctx, keys)
	if err != nil {
		return n, fmt.Errorf("couldn't delete payloads: %w", err)
	}
	return n, nil
}

// scanEntries calls f for every entry in [from, to) of a tree of size, in
// order, a bundle at a time.
func (s *Server) scanEntries(ctx context.Context, from, to, size uint64, f func(idx uint64, entry []byte) error) error {
	for i := from / layout.EntryBundleWidth; i*layout.EntryBundleWidth < to; i++ {
		raw, err := s.reader.ReadEntryBundle(ctx, i, layout.PartialTileSize(0, i, size))
		if err != nil {
			return fmt.Errorf("couldn't read entry bundle %d: %w", i, err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return fmt.Errorf("couldn't parse entry bundle %d: %w", i, err)
		}
		for j, e := range b.Entries {
			idx := i*layout.EntryBundleWidth + uint64(j)
			if idx < from || idx >= to {
				continue
			}
			if err := f(idx, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// repairErasures applies every erasure leaf above the payload store's
// mark that this process has not applied, then raises the mark to the tree
// size it read. It waits at most wait for the erasure lock, and does
// nothing if another frontend holds it that long.
func (s *Server) repairErasures(ctx context.Context, wait time.Duration) error {
	unlock, err := s.payloads.lock(ctx, wait)
	if errors.Is(err, errLockBusy) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("couldn't take the erasure lock: %w", err)
	}
	defer unlock()
	from, err := s.payloads.mark(ctx, markErasuresApplied)
	if err != nil {
		return fmt.Errorf("couldn't read the erasure mark: %w", err)
	}
	size, err := s.integratedSize()
	if err != nil {
		return fmt.Errorf("couldn't read the tree size: %w", err)
	}
	if from >= size {
		return nil
	}
	type found struct {
		idx uint64
		e   checkpoint.Erasure
	}
	var todo []found
	err = s.scanEntries(ctx, from, size, size, func(idx uint64, entry []byte) error {
		if !looksErasure(entry) {
			return nil
		}
		if _, done := s.appliedErasures.Load(idx); done {
			return nil
		}
		e, err := checkpoint.ParseErasureLeaf(entry)
		if err != nil {
			s.log.Warn("an entry that looks like an erasure leaf does not parse: not applied", "index", idx, "err", err)
			return nil
		}
		todo = append(todo, found{idx, e})
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range todo {
		if err := s.applyErasure(ctx, f.idx, f.e, "repair"); err != nil {
			return fmt.Errorf("couldn't apply the erasure leaf at %d: %w", f.idx, err)
		}
		s.erasureMetrics.repaired.Inc()
		s.log.Info("erasure applied again (its deletes had not all been made)", "erasure_index", f.idx, "source", f.e.Source, "reason", f.e.Reason)
	}
	return s.payloads.setMark(ctx, markErasuresApplied, size)
}

// erasureLoop re-applies erasures every erasureRepairEvery until the server
// stops.
func (s *Server) erasureLoop(done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(erasureRepairEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if err := s.repairErasures(s.ctx, time.Second); err != nil && s.ctx.Err() == nil {
			s.log.Warn("couldn't re-apply the erasures above the applied mark; retrying in a minute", "err", err)
		}
	}
}
