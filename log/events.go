package log

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera"
)

// leafEnvelope is about what a leaf adds to its event, besides the source
// and the key: {"event":,"received":"…","source":"","v":1} and escaping.
const leafEnvelope = 96

// MaxIdempotencyKey is the longest Idempotency-Key header accepted.
const MaxIdempotencyKey = 255

// eventResult is one event's answer.
type eventResult struct {
	Index     uint64 `json:"index"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// leaf is the entry this request appended, when it did: a receipt
	// needs it, and need not read it back from its bundle.
	leaf []byte
	// event, for a duplicate, is the canonical event the request sent: the
	// receipt, made from the entry already in the log, must hold it.
	event []byte
	// Truncated: the event was too large for a leaf and the log holds a
	// marked stand-in for it (see truncatedEvent).
	Truncated bool `json:"truncated,omitempty"`
	// err, in a partial append, is why this event was not logged.
	err error
}

// An ingestEvent is one event of a request on its way to a leaf.
type ingestEvent struct {
	raw []byte
	// key is the idempotency key the leaf carries; "" for none, and then
	// the event's "id" member, if any, is its key.
	key string
	// explicit: the sender chose key (an Idempotency-Key header). A
	// different event under a used explicit key is refused (422); under any
	// other key it is logged as a new entry.
	explicit bool
	// where names the event in errors: "the event", "line 3", "item 2".
	where string
}

// requestEvents makes the events of a /v1/events request: in a batch with an
// Idempotency-Key header K, event n (from 0) has the key K/n; unit names a
// batch's events in errors ("line", "item").
func requestEvents(idemKey string, isBatch bool, unit string, raws [][]byte) []ingestEvent {
	evs := make([]ingestEvent, len(raws))
	for i, raw := range raws {
		evs[i] = ingestEvent{raw: raw, key: idemKey, explicit: idemKey != "", where: "the event"}
		if isBatch {
			evs[i].where = unit + " " + strconv.Itoa(i+1)
			if idemKey != "" {
				evs[i].key = idemKey + "/" + strconv.Itoa(i)
			}
		}
	}
	return evs
}

// appendOptions say how appendBatch treats events that cannot be logged as
// they are.
type appendOptions struct {
	// truncate logs an event too large for a leaf as a marked stand-in
	// (truncatedEvent) instead of refusing the request; keep lists the
	// members the stand-in keeps first.
	truncate bool
	keep     []string
	// notIJSON logs an event that is not I-JSON as a marked stand-in of its
	// members that are (notIJSONEvent) instead of refusing the request.
	notIJSON bool
	// partial logs the events that can be logged and answers each of the
	// others with its error (in eventResult.err), instead of refusing the
	// whole request.
	partial bool
	// endpoint labels tidemark_log_appended_total ("events" when empty).
	endpoint string
}

// handleEvents serves POST /v1/events.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	ndjson, err := eventsContentType(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	waitWitnessed, err := waitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	source, err := s.authenticate(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if len(idemKey) > MaxIdempotencyKey || !printableASCII(idemKey) {
		s.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "Idempotency-Key must be at most %d printable ASCII characters", MaxIdempotencyKey))
		return
	}
	body, bodyHeld, err := s.readBody(w, r, source)
	defer bodyHeld.release()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Count the events in the bytes, admit them, and only then split.
	isArray := !ndjson && isJSONArray(body)
	n := 1
	switch {
	case ndjson:
		n = countLines(body)
	case isArray:
		if n, err = shipperArrayLen(body); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	release, err := s.admit(source, n, n, "events")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	var raws [][]byte
	unit := "line"
	switch {
	case ndjson:
		raws = splitLines(body)
		if len(raws) == 0 {
			s.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "the NDJSON body has no events"))
			return
		}
	case isArray:
		// A JSON array is a batch, as log shippers send one (shippers.go);
		// it is answered like NDJSON.
		if raws, err = shipperArray(body); err != nil {
			s.fail(w, r, err)
			return
		}
		ndjson, unit = true, "item"
	default:
		raws = [][]byte{body}
	}
	results, err := s.appendBatch(r.Context(), source, requestEvents(idemKey, ndjson, unit, raws), appendOptions{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The leaves have their own buffer: the body is not needed while the
	// answer waits for witnesses.
	bodyHeld.release()
	if waitWitnessed {
		s.answerWitnessed(w, r, ndjson, results)
		return
	}
	if ndjson {
		writeJSON(w, http.StatusOK, map[string]any{"results": results})
	} else {
		writeJSON(w, http.StatusOK, results[0])
	}
}

// appendBatch validates every event, builds every leaf, and only then
// appends: unless opts.partial, a request is taken whole or not at all. It
// returns once every new leaf is durably sequenced. Each event brings its
// own idempotency key (requestEvents for /v1/events; k8sEvents, otlpEvents).
// The caller has admitted the events (admit) before decoding them.
func (s *Server) appendBatch(ctx context.Context, source string, evs []ingestEvent, opts appendOptions) ([]eventResult, error) {
	n := len(evs)
	leaves := make([][]byte, n)
	results := make([]eventResult, n)
	keyed := make([]keyedEvent, n)
	events := make([][]byte, n) // the canonical event in each leaf
	anyKey := false

	// received: the time the request was read, strictly increasing per leaf.
	received := s.stamps.next(n)
	// All leaves of the request share one buffer: one allocation, not n.
	size := 0
	for _, ev := range evs {
		size += len(ev.raw) + leafEnvelope + len(source) + 2*len(ev.key) + 16
	}
	arena := make([]byte, 0, size)
	for i, ev := range evs {
		start := len(arena)
		var id checkpoint.EventID
		var evLen int
		var err error
		arena, id, evLen, err = checkpoint.AppendEventLeaf(arena, ev.raw, received[i], source, ev.key)
		if err != nil && opts.notIJSON {
			room := checkpoint.MaxLeafSize - checkpoint.LeafOverhead(source, ev.key)
			if standIn, serr := notIJSONEvent(ev.raw, room, opts.keep); serr == nil {
				arena, id, evLen, err = checkpoint.AppendEventLeaf(arena, standIn, received[i], source, ev.key)
				results[i].Truncated = err == nil
			}
		}
		// Full slice expression: a later append that outgrows the arena
		// moves on to a new array and leaves this leaf as it is.
		leaf := arena[start:len(arena):len(arena)]
		if err == nil && !results[i].Truncated {
			err = checkReservedMembers(leaf[len(`{"event":`) : len(`{"event":`)+evLen])
		}
		if err == nil && len(leaf) > checkpoint.MaxLeafSize && opts.truncate {
			room := checkpoint.MaxLeafSize - (len(leaf) - evLen)
			var standIn []byte
			if standIn, err = truncatedEvent(leaf[len(`{"event":`):len(`{"event":`)+evLen], room, opts.keep); err == nil {
				arena = arena[:start]
				arena, id, evLen, err = checkpoint.AppendEventLeaf(arena, standIn, received[i], source, ev.key)
				leaf = arena[start:len(arena):len(arena)]
				results[i].Truncated = true
			}
		}
		switch {
		case err != nil:
			err = errorf(http.StatusBadRequest, "bad_json", "%s: %v (events must be I-JSON objects, RFC 7493)", ev.where, err)
		case len(leaf) > checkpoint.MaxLeafSize:
			room := checkpoint.MaxLeafSize - (len(leaf) - evLen)
			err = errorf(http.StatusRequestEntityTooLarge, "too_large",
				"%s is %d bytes in canonical JSON; a leaf is at most %d bytes, which leaves room for %d bytes of event", ev.where, evLen, checkpoint.MaxLeafSize, room)
		}
		if err != nil {
			if !opts.partial {
				return nil, err
			}
			arena = arena[:start]
			results[i] = eventResult{err: err}
			continue
		}
		leaves[i] = leaf
		events[i] = leaf[len(`{"event":`) : len(`{"event":`)+evLen]
		switch {
		case ev.key != "":
			keyed[i] = keyedEvent{key: "k:" + ev.key, explicit: ev.explicit}
		case !id.IsZero():
			keyed[i] = keyedEvent{key: "i:" + id.Key()}
		default:
			continue
		}
		keyed[i].ev = eventHash(events[i])
		anyKey = true
	}
	if err := s.acceptingWrites(); err != nil {
		return nil, err
	}
	var b *batch
	if anyKey {
		var err error
		if b, err = s.idempotency.begin(ctx, source, keyed); err != nil {
			var kc *keyConflict
			if errors.As(err, &kc) {
				return nil, keyConflictError(evs[kc.pos], kc)
			}
			if errors.Is(err, errIndexUnavailable) {
				if kind := s.indexDiskFault(err); kind != "" {
					// The SQLite index shares the log's disk.
					s.metrics.storageErrors.WithLabelValues(kind).Inc()
					s.storageLog.log(s, kind, err)
					e := errorf(http.StatusServiceUnavailable, "disk_"+kind, "%s", storageMessage(kind, evs, nil))
					e.retryAfter = storageRetryAfter
					return nil, e
				}
				s.log.Warn("a write with idempotency keys was refused: the index could not claim its keys", "err", err)
				e := errorf(http.StatusServiceUnavailable, "index_unavailable", "the idempotency index could not record this request's keys; nothing was logged: retry")
				e.retryAfter = 1
				return nil, e
			}
			return nil, err
		}
		if reused := b.reusedCount(); reused > 0 {
			endpoint := cmp.Or(opts.endpoint, "events")
			s.metrics.reusedIDs.WithLabelValues(endpoint).Add(float64(reused))
			if held, ok := s.reusedLog.allow(reusedLogEvery); ok {
				s.log.Warn("events reuse the id of a different event: each is logged as a new entry (tidemark_log_reused_ids_total counts them all)",
					"endpoint", endpoint, "source", source, "events", reused, "first_key", b.firstReusedKey(keyed), "requests_not_logged", held)
			}
		}
	}
	// Append every event that is not already answered by the index.
	var toAppend []*tessera.Entry
	var positions []int
	for i, leaf := range leaves {
		if leaf == nil {
			continue // refused, in a partial append
		}
		if b != nil {
			st := b.states[i]
			if st.found || st.wait != nil || st.sameAs >= 0 {
				continue
			}
		}
		toAppend = append(toAppend, tessera.NewEntry(leaf))
		positions = append(positions, i)
	}
	started := time.Now()
	written := map[int]uint64{}
	var appendErr error
	if len(toAppend) > 0 {
		// Tessera ignores the context once an entry is queued: the entry
		// lands even if the client goes away, which is why keys exist.
		indexes, errs := s.queue.append(context.WithoutCancel(ctx), toAppend)
		for k, i := range positions {
			if errs[k] != nil {
				appendErr = errs[k]
				continue
			}
			results[i].Index, results[i].leaf = indexes[k].Index, leaves[i]
			written[i] = indexes[k].Index
		}
	}
	if len(written) > 0 {
		s.metrics.integration.Observe(time.Since(started).Seconds())
		endpoint := cmp.Or(opts.endpoint, "events")
		s.metrics.appended.WithLabelValues(endpoint).Add(float64(len(written)))
	}
	if s.afterAppend != nil {
		if err := s.afterAppend(); err != nil {
			// A test stands in for a process that dies here: nothing more
			// of the index is written; the claims stay open in the store.
			if b != nil {
				b.abandon()
			}
			return nil, err
		}
	}
	if b != nil {
		b.finish(written, appendErr)
	}
	if appendErr != nil {
		return nil, s.appendError(appendErr, evs, written)
	}
	if b == nil {
		return results, nil
	}
	// Fill in the events answered by the index or by another request.
	for i, st := range b.states {
		switch {
		case st.found:
			results[i] = eventResult{Index: st.idx, Duplicate: true, event: events[i]}
		case st.wait != nil:
			select {
			case <-st.wait.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if st.wait.err != nil {
				e := errorf(http.StatusServiceUnavailable, "retry", "an earlier request with the same idempotency key failed (%v): retry", st.wait.err)
				e.retryAfter = 1
				return nil, e
			}
			results[i] = eventResult{Index: st.wait.idx, Duplicate: true, event: events[i]}
		}
	}
	for i, st := range b.states {
		if st.sameAs >= 0 {
			results[i] = eventResult{Index: results[st.sameAs].Index, Duplicate: true, event: events[i]}
		}
	}
	return results, nil
}

// reusedLogEvery bounds how often reused ids are logged: a sender can reuse
// ids on every request.
const reusedLogEvery = 10 * time.Second

// keyConflictError is the 422 of an explicit key used for another event.
func keyConflictError(ev ingestEvent, kc *keyConflict) error {
	if kc.pending {
		return errorf(http.StatusUnprocessableEntity, "key_reused",
			"%s: idempotency key %q is in use by a request in flight with a different event: a retry must send the same event; use a new Idempotency-Key for a new event", ev.where, ev.key)
	}
	return errorf(http.StatusUnprocessableEntity, "key_reused",
		"%s: idempotency key %q was already used for a different event (index %d): a retry must send the same event; use a new Idempotency-Key for a new event", ev.where, ev.key, kc.idx)
}

// eventsContentType reports whether the body is NDJSON, or refuses the type.
func eventsContentType(r *http.Request) (ndjson bool, err error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false, errorf(http.StatusUnsupportedMediaType, "content_type", "send Content-Type: application/json for one event or application/x-ndjson for many")
	}
	switch mt {
	case "application/json":
		return false, nil
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines":
		return true, nil
	}
	return false, errorf(http.StatusUnsupportedMediaType, "content_type", "Content-Type %s is not accepted: send application/json for one event or application/x-ndjson for many", mt)
}

// minBodyBuffer is where a body's buffer starts when its size is unknown or
// larger: a declared Content-Length is a claim, not a byte that arrived.
const minBodyBuffer = 4 << 10

// readBody reads a request body within the configured limit, inflating gzip
// if the client sent it, and refusing what inflates past the limit. Its
// buffer grows (doubling) as bytes arrive, each growth taken first from the
// log's body budget for source (503 when the log's budget or the writer's
// share is spent), so a client that declares 8 MiB and sends one byte a
// second holds a few KiB, not 8 MiB. The claim holds what it took: release
// it when the request is answered, whatever the error.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, source string) (body []byte, claim *bodyClaim, err error) {
	claim = &bodyClaim{s: s, source: source}
	body, err = s.readBodyHeld(w, r, claim)
	if err != nil {
		claim.release()
		return nil, claim, err
	}
	return body, claim, nil
}

// readBodyHeld is readBody; claim holds what it took from the budget.
func (s *Server) readBodyHeld(w http.ResponseWriter, r *http.Request, claim *bodyClaim) ([]byte, error) {
	limit := s.cfg.MaxBody
	if r.ContentLength > limit {
		return nil, errorf(http.StatusRequestEntityTooLarge, "too_large", "the body is %d bytes; this log takes at most %d per request: split it", r.ContentLength, limit)
	}
	var rd io.Reader = http.MaxBytesReader(w, r.Body, limit+1)
	gzipped := false
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "bad_gzip", "the body is not valid gzip: %v", err)
		}
		defer zr.Close()
		rd, gzipped = zr, true
	default:
		return nil, errorf(http.StatusUnsupportedMediaType, "content_encoding", "Content-Encoding %q is not accepted: send gzip or nothing", enc)
	}
	// A small declared body starts at its size; the size of a gzipped
	// body is only known once inflated.
	initial := int64(minBodyBuffer)
	if r.ContentLength >= 0 && !gzipped {
		initial = min(initial, r.ContentLength)
	}
	initial = min(initial, limit)
	// Every body counts at least minBodyBuffer (or limit), even one that
	// declares less: a request being read costs a goroutine and buffers
	// too, and so the writer's share bounds its open requests.
	if err := claim.take(min(minBodyBuffer, limit)); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, initial)
	for {
		if len(buf) == cap(buf) {
			// Full: is there more? Only then grow.
			var one [1]byte
			n, err := io.ReadFull(rd, one[:])
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, bodyError(err, limit, gzipped)
			}
			if int64(len(buf)) >= limit {
				return nil, bodyError(errBodyOverLimit, limit, gzipped)
			}
			grown := min(max(2*int64(cap(buf)), minBodyBuffer), limit)
			if err := claim.take(grown - claim.held); err != nil {
				return nil, err
			}
			buf = append(make([]byte, 0, grown), buf...)
			buf = append(buf, one[:n]...)
			continue
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, bodyError(err, limit, gzipped)
		}
	}
	return buf, nil
}

// errBodyOverLimit is a body that has more bytes than the limit.
var errBodyOverLimit = errors.New("over the limit")

// bodyError is the answer to an error reading a body.
func bodyError(err error, limit int64, gzipped bool) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || errors.Is(err, errBodyOverLimit):
		return errorf(http.StatusRequestEntityTooLarge, "too_large", "the body is over %d bytes (after decompression); this log takes at most that per request: split it", limit)
	case gzipped && (errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF)):
		return errorf(http.StatusBadRequest, "bad_gzip", "the body is not valid gzip: %v", err)
	}
	return errorf(http.StatusBadRequest, "bad_body", "couldn't read the body: %v", err)
}

// splitLines splits an NDJSON body into its non-blank lines.
func splitLines(b []byte) [][]byte {
	lines := make([][]byte, 0, countLines(b))
	for line := range ndjsonLines(b) {
		lines = append(lines, line)
	}
	return lines
}

// countLines counts the non-blank lines of an NDJSON body, the events
// splitLines would make, without allocating.
func countLines(b []byte) int {
	n := 0
	for range ndjsonLines(b) {
		n++
	}
	return n
}

// ndjsonLines yields the non-blank lines of an NDJSON body.
func ndjsonLines(b []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			var line []byte
			if i < 0 {
				line, b = b, nil
			} else {
				line, b = b[:i], b[i+1:]
			}
			if len(bytes.TrimSpace(line)) > 0 && !yield(line) {
				return
			}
		}
	}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// stamps hands out "received" times that strictly increase, so that no two
// leaves of this process are byte-identical even for identical events in
// the same nanosecond (Tessera would otherwise take the second for a
// duplicate of the first).
type stamps struct {
	mu   sync.Mutex // guards last
	last time.Time
}

func (s *stamps) next(n int) []time.Time {
	now := time.Now().UTC().Round(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.After(s.last) {
		now = s.last.Add(time.Nanosecond)
	}
	out := make([]time.Time, n)
	for i := range out {
		out[i] = now.Add(time.Duration(i))
	}
	s.last = out[n-1]
	return out
}
