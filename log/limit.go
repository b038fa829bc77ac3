package log

import (
	"net/http"
	"sync"
)

// The log bounds the memory its writers can make it hold, at three points,
// each checked before the memory is taken:
//
//   - bodyBudget: the request body bytes held by all requests together. A
//     body's buffer grows as its bytes arrive (readBody), never from the
//     Content-Length a client declares, and each growth is taken from the
//     budget first; when it is spent, 503 with Retry-After.
//   - Config.MaxEventsPerRequest: the events (NDJSON lines, array items,
//     EventList items, OTLP log records) of one request, counted in the
//     body's bytes without decoding it (admit); over it, 413. Decoding
//     allocates per event, and a few bytes make an event ("{}\n", or two
//     bytes of protobuf for an empty log record), so this bound, and not
//     the body's size, is what keeps one request's memory in proportion.
//   - inflight: the events of all requests together, between admission and
//     the answer; over it, 503 with Retry-After. An OTLP request weighs
//     more than its records: its values (attributes, array elements...)
//     count too, every otlpValuesPerEvent as one event, since the decoder
//     allocates for each and an empty one is two bytes; a request that
//     weighs more than the whole bound is 413.

// inflight bounds the events the server holds between admitting a request
// and answering it. Tessera's POSIX and MySQL drivers never push back, so
// without this bound an overloaded log would gather requests (and memory)
// without limit.
//
// Every request fits on its own: New refuses a MaxEventsPerRequest above
// MaxInFlight, so a request the per-request bound lets through can always be
// admitted once the log is idle, and a retry after Retry-After succeeds.
type inflight struct {
	max int

	mu  sync.Mutex // guards cur
	cur int
}

// acquire reserves n events, or answers 503 with Retry-After.
func (l *inflight) acquire(n int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur+n > l.max {
		e := errorf(http.StatusServiceUnavailable, "overloaded", "the log is busy (%d events in flight): retry after the time in Retry-After", l.cur)
		e.retryAfter = 1
		return e
	}
	l.cur += n
	return nil
}

func (l *inflight) release(n int) {
	l.mu.Lock()
	l.cur -= n
	l.mu.Unlock()
}

func (l *inflight) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// bodyBudget bounds the bytes of request bodies held by all requests
// together: readBody takes a buffer's capacity from it before it allocates,
// and gives it back when the request is answered. New refuses a budget
// smaller than MaxBody, so a request alone always fits.
type bodyBudget struct {
	max int64

	mu  sync.Mutex // guards cur
	cur int64
}

// acquire reserves n bytes, or answers 503 with Retry-After.
func (b *bodyBudget) acquire(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur+n > b.max {
		e := errorf(http.StatusServiceUnavailable, "overloaded_bytes", "the log is busy (%d bytes of request bodies held, its limit is %d): retry after the time in Retry-After", b.cur, b.max)
		e.retryAfter = 1
		return e
	}
	b.cur += n
	return nil
}

func (b *bodyBudget) release(n int64) {
	b.mu.Lock()
	b.cur -= n
	b.mu.Unlock()
}

func (b *bodyBudget) current() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}

// admit checks a request's count of events against MaxEventsPerRequest (413:
// split the batch) and reserves weight events in the in-flight bound (503):
// weight is n, or more for a request whose decoding costs more than its
// events (otlpCount.weight), and at most MaxInFlight. Call it once the body
// is read and counted and before anything is decoded or split; call release
// when the request is answered. what names the events in the message
// ("events", "log records").
func (s *Server) admit(n, weight int, what string) (release func(), err error) {
	if n > s.cfg.MaxEventsPerRequest {
		return nil, errorf(http.StatusRequestEntityTooLarge, "too_many_events",
			"the request holds %d %s; this log takes at most %d per request: split the batch into requests of at most %d", n, what, s.cfg.MaxEventsPerRequest, s.cfg.MaxEventsPerRequest)
	}
	if err := s.inflight.acquire(weight); err != nil {
		return nil, err
	}
	return func() { s.inflight.release(weight) }, nil
}
