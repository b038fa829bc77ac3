package log

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
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
	source, err := authenticate(s.tokens, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if len(idemKey) > MaxIdempotencyKey || !printableASCII(idemKey) {
		s.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "Idempotency-Key must be at most %d printable ASCII characters", MaxIdempotencyKey))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var raws [][]byte
	if ndjson {
		raws = splitLines(body)
		if len(raws) == 0 {
			s.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "the NDJSON body has no events"))
			return
		}
	} else {
		raws = [][]byte{body}
	}
	results, err := s.appendEvents(r.Context(), source, idemKey, ndjson, raws)
	if err != nil {
		s.fail(w, r, err)
		return
	}
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

// appendEvents validates every event, builds every leaf, and only then
// appends: a request is taken whole or not at all. It returns once every new
// leaf is durably sequenced.
func (s *Server) appendEvents(ctx context.Context, source, idemKey string, isBatch bool, raws [][]byte) ([]eventResult, error) {
	n := len(raws)
	leaves := make([][]byte, n)
	keys := make([]string, n)
	anyKey := false
	// Admission: bound what is in flight before any work on the events.
	if err := s.inflight.acquire(n); err != nil {
		return nil, err
	}
	defer s.inflight.release(n)

	// received: the time the request was read, strictly increasing per leaf.
	received := s.stamps.next(n)
	// All leaves of the request share one buffer: one allocation, not n.
	size := 0
	for _, raw := range raws {
		size += len(raw) + leafEnvelope + len(source) + 2*len(idemKey) + 16
	}
	arena := make([]byte, 0, size)
	for i, raw := range raws {
		where := "the event"
		if isBatch {
			where = fmt.Sprintf("line %d", i+1)
		}
		leafKey := idemKey
		if idemKey != "" && isBatch {
			leafKey = idemKey + "/" + strconv.Itoa(i)
		}
		start := len(arena)
		var id string
		var evLen int
		var err error
		arena, id, evLen, err = checkpoint.AppendEventLeaf(arena, raw, received[i], source, leafKey)
		// Full slice expression: a later append that outgrows the arena
		// moves on to a new array and leaves this leaf as it is.
		leaf := arena[start:len(arena):len(arena)]
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "bad_json", "%s: %v (events must be I-JSON objects, RFC 7493)", where, err)
		}
		if len(leaf) > checkpoint.MaxLeafSize {
			room := checkpoint.MaxLeafSize - (len(leaf) - evLen)
			return nil, errorf(http.StatusRequestEntityTooLarge, "too_large",
				"%s is %d bytes in canonical JSON; a leaf is at most %d bytes, which leaves room for %d bytes of event", where, evLen, checkpoint.MaxLeafSize, room)
		}
		switch {
		case leafKey != "":
			keys[i] = "k:" + leafKey
		case id != "":
			keys[i] = "i:" + id
		}
		anyKey = anyKey || keys[i] != ""
		leaves[i] = leaf
	}
	results := make([]eventResult, n)
	var b *batch
	if anyKey {
		b = s.dedup.begin(source, keys)
	}
	// Append every event that is not already answered by the index.
	var toAppend []*tessera.Entry
	var positions []int
	for i, leaf := range leaves {
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
		indexes, errs := s.seq.append(context.WithoutCancel(ctx), toAppend)
		for k, i := range positions {
			if errs[k] != nil {
				appendErr = errs[k]
				continue
			}
			results[i] = eventResult{Index: indexes[k].Index}
			written[i] = indexes[k].Index
		}
	}
	if len(written) > 0 {
		s.metrics.integration.Observe(time.Since(started).Seconds())
		s.metrics.appended.WithLabelValues("events").Add(float64(len(written)))
	}
	if s.afterAppend != nil {
		if err := s.afterAppend(); err != nil {
			// A test stands in for a process that dies here: nothing of the
			// index is written and the watermark must not pass these entries.
			if b != nil {
				s.dedup.frozen.Store(true)
				b.finish(nil, err)
			}
			return nil, err
		}
	}
	if b != nil {
		b.finish(written, appendErr)
	}
	if appendErr != nil {
		return nil, fmt.Errorf("couldn't append to the log: %w", appendErr)
	}
	if b == nil {
		return results, nil
	}
	// Fill in the events answered by the index or by another request.
	for i, st := range b.states {
		switch {
		case st.found:
			results[i] = eventResult{Index: st.idx, Duplicate: true}
		case st.wait != nil:
			select {
			case <-st.wait.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if st.wait.err != nil {
				e := errorf(http.StatusServiceUnavailable, "retry", "an earlier request with the same idempotency key failed: retry")
				e.retryAfter = 1
				return nil, e
			}
			results[i] = eventResult{Index: st.wait.idx, Duplicate: true}
		}
	}
	for i, st := range b.states {
		if st.sameAs >= 0 {
			results[i] = eventResult{Index: results[st.sameAs].Index, Duplicate: true}
		}
	}
	return results, nil
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

// readBody reads a request body within the configured limit, inflating gzip
// if the client sent it, and refusing what inflates past the limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxBody
	if r.ContentLength > limit {
		return nil, errorf(http.StatusRequestEntityTooLarge, "too_large", "the body is %d bytes; this log takes at most %d per request: split it", r.ContentLength, limit)
	}
	var rd io.Reader = http.MaxBytesReader(w, r.Body, limit+1)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "bad_gzip", "the body is not valid gzip: %v", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, errorf(http.StatusUnsupportedMediaType, "content_encoding", "Content-Encoding %q is not accepted: send gzip or nothing", enc)
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(max(r.ContentLength, 512), limit)+1))
	_, err := io.Copy(buf, io.LimitReader(rd, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(buf.Len()) > limit:
		return nil, errorf(http.StatusRequestEntityTooLarge, "too_large", "the body is over %d bytes (after decompression); this log takes at most that per request: split it", limit)
	case errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, errorf(http.StatusBadRequest, "bad_gzip", "the body is not valid gzip: %v", err)
	case err != nil:
		return nil, errorf(http.StatusBadRequest, "bad_body", "couldn't read the body: %v", err)
	}
	return buf.Bytes(), nil
}

// splitLines splits an NDJSON body into its non-blank lines.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		var line []byte
		if i < 0 {
			line, b = b, nil
		} else {
			line, b = b[:i], b[i+1:]
		}
		if len(bytes.TrimSpace(line)) > 0 {
			lines = append(lines, line)
		}
	}
	return lines
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
