package log

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera"
)

// handleAdd serves POST /add: the raw body is one entry, and the answer is
// its decimal index. This is the interface of Tessera's conformance servers,
// so Tessera's hammer and other tools can write to a Tidemark log. An empty
// body is refused (400), and so is a body that looks like an event leaf:
// only the server makes those. A commitment log refuses every raw entry
// (409): its entry bundles are public, and a raw entry in them could never
// be erased.
func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) {
	// The source is not in the entry; it names the writer whose share of
	// the budgets the request takes.
	source, err := s.authenticate(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.cfg.Leaves == LeavesCommitment {
		s.fail(w, r, errorf(http.StatusConflict, "commitment_log", "this log keeps events erasable (--leaves commitment) and takes no raw entries: a raw entry would sit in the public entry bundles, where it could never be erased. Send events to /v1/events"))
		return
	}
	if r.ContentLength > checkpoint.MaxLeafSize {
		s.fail(w, r, errorf(http.StatusRequestEntityTooLarge, "too_large", "an entry is at most %d bytes; this one is %d", checkpoint.MaxLeafSize, r.ContentLength))
		return
	}
	body, bodyHeld, err := s.readBody(w, r, source)
	defer bodyHeld.release()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(body) > checkpoint.MaxLeafSize {
		s.fail(w, r, errorf(http.StatusRequestEntityTooLarge, "too_large", "an entry is at most %d bytes; this one is %d", checkpoint.MaxLeafSize, len(body)))
		return
	}
	if len(body) == 0 {
		// Tessera would append it: an entry of no bytes, which records
		// nothing and is almost always a client that lost its body.
		s.fail(w, r, errorf(http.StatusBadRequest, "empty", "the body is empty: POST /add appends the raw body as one entry, and an empty entry records nothing. Send the entry's bytes"))
		return
	}
	if checkpoint.ClaimsEventLeaf(body) {
		s.fail(w, r, errorf(http.StatusBadRequest, "forged_leaf", "this body looks like an event leaf, which only the server writes: send events to /v1/events"))
		return
	}
	if err := s.acceptingWrites(); err != nil {
		s.fail(w, r, err)
		return
	}
	release, err := s.admit(source, 1, 1, "entries")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	started := time.Now()
	indexes, errs := s.queue.append(context.WithoutCancel(r.Context()), []*tessera.Entry{tessera.NewEntry(body)})
	idx, err := indexes[0], errs[0]
	if err != nil {
		s.fail(w, r, s.appendError(err, nil, nil))
		return
	}
	s.metrics.integration.Observe(time.Since(started).Seconds())
	s.metrics.appended.WithLabelValues("add").Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(strconv.AppendUint(nil, idx.Index, 10))
}
