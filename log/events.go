package log

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
)

// MaxIdempotencyKey is the longest Idempotency-Key header accepted.
const MaxIdempotencyKey = 255

// requestEvents makes the events of a /v1/events request: in a batch with an
// Idempotency-Key header K, event n (from 0) has the key K/n; unit names a
// batch's events in errors ("line", "item").
func requestEvents(idemKey string, isBatch bool, unit string, raws [][]byte) []ingestEvent {
	evs := make([]ingestEvent, len(raws))
	for i, raw := range raws {
		evs[i] = ingestEvent{raw: raw, key: idemKey, explicit: idemKey != ""}
		if isBatch {
			evs[i].unit, evs[i].pos = unit, i
			if idemKey != "" {
				evs[i].key = idemKey + "/" + strconv.Itoa(i)
			}
		}
	}
	return evs
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
