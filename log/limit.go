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
//
// Both budgets are shared by every writer, and what a request holds it
// holds until it is answered: a body that stalls keeps its buffer until
// ReadTimeout, a ?wait=witnessed request keeps its events until the
// witnesses answer. First come, first served, one writer could hold all of
// a budget (four stalled bodies are 32 MiB) and every other writer would
// get 503 for as long as it cared to. So each budget also bounds what one
// writer holds, its share:
//
//   - A writer is the source a write is authenticated as (the token's name,
//     the client certificate's CN; OpenSource for all open writes), known
//     before the body is read.
//   - Its share is half of the budget. A request that would take the writer
//     past its share is answered 503 with Retry-After and a message that
//     says it is this writer's share that is spent, not the log's, while
//     other writers still get theirs (cause overloaded_writer for events,
//     overloaded_writer_bytes for body bytes).
//   - A writer that holds nothing else of a budget may take one request up
//     to the whole budget: any request the log takes alone (a body of
//     MaxBody, the heaviest OTLP request) can still be taken when it is its
//     writer's only one, and a retry after Retry-After still succeeds.
//
// Every body counts at least minBodyBuffer (or MaxBody when smaller),
// whatever it declares: a request being read costs a goroutine and
// buffers besides its body, so a writer's share also bounds how many slow
// bodies it can keep open at once (4,096 with the defaults).
//
// One writer alone never holds more than half of a budget (beyond one
// request that is all it holds), so the other half is left for the
// others. A log whose writers all share one source (open writes) uses half
// of each budget, which with the defaults is 16 MiB (32 bodies of 500 KB
// at once) and 50,000 events (50 batches of 1,000).

// budget is one bound: what all requests hold together (cur, at most max)
// and what each source holds (at most share, unless that is its only
// request). Requests take and give back through the server's wrappers
// (admit, bodyClaim), which word the refusals.
type budget[T int | int64] struct {
	max T

	mu       sync.Mutex   // guards cur and bySource
	cur      T            // held by all requests
	bySource map[string]T // held by each source; only sources holding something
}

// inflight bounds the events the server holds between admitting a request
// and answering it. Tessera's POSIX and MySQL drivers never push back, so
// without this bound an overloaded log would gather requests (and memory)
// without limit.
//
// Every request fits on its own: New refuses a MaxEventsPerRequest above
// MaxInFlight, so a request the per-request bound lets through can always be
// admitted once its writer's other requests are answered and the log is
// idle, and a retry after Retry-After succeeds.
type inflight = budget[int]

// bodyBudget bounds the bytes of request bodies held by all requests
// together: readBody takes a buffer's capacity from it before it allocates,
// and gives it back when the request is answered. New refuses a budget
// smaller than MaxBody, so a request alone always fits.
type bodyBudget = budget[int64]

// refusal says which limit refused a take.
type refusal int

const (
	taken       refusal = iota
	shareSpent          // the source's share
	budgetSpent         // the whole budget
)

// share is what one source may hold of the budget.
func (b *budget[T]) share() T { return b.max / 2 }

// take reserves n for a request of source that already holds mine. It
// returns what the source holds (before the take, when refused) and which
// limit refused it, if one did.
func (b *budget[T]) take(source string, mine, n T) (held T, r refusal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	held = b.bySource[source]
	// Beyond its share only with its one request: others of the source
	// hold nothing.
	if held+n > b.share() && held > mine {
		return held, shareSpent
	}
	if b.cur+n > b.max {
		return held, budgetSpent
	}
	if b.bySource == nil {
		b.bySource = map[string]T{}
	}
	b.cur += n
	b.bySource[source] = held + n
	return held + n, taken
}

// give returns n taken for source.
func (b *budget[T]) give(source string, n T) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur -= n
	if left := b.bySource[source] - n; left > 0 {
		b.bySource[source] = left
	} else {
		delete(b.bySource, source)
	}
}

// current is what all requests hold.
func (b *budget[T]) current() T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}

// heldBy is what one source holds.
func (b *budget[T]) heldBy(source string) T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bySource[source]
}

// overloaded is the 503 of a take the budget refused: cause is its
// tidemark_log_rejected_total cause when the log's budget is spent, and
// writerCause when the writer's share is; what names what the budget holds
// ("events in flight", "bytes of request bodies held").
func overloaded[T int | int64](b *budget[T], source string, held T, r refusal, cause, writerCause, what string) error {
	var e *httpError
	if r == shareSpent {
		e = errorf(http.StatusServiceUnavailable, writerCause,
			"this writer (%s) has %d %s, and a writer may hold at most %d (half of the log's %d): it is this writer's share that is spent, not the log's, which still takes other writers' requests; retry after the time in Retry-After, when some of this writer's requests are answered, or send fewer at once",
			source, held, what, b.share(), b.max)
	} else {
		e = errorf(http.StatusServiceUnavailable, cause,
			"the log is busy (%d %s, its limit is %d): retry after the time in Retry-After", b.current(), what, b.max)
	}
	e.retryAfter = 1
	return e
}

// admit checks a request's count of events against MaxEventsPerRequest (413:
// split the batch) and reserves weight events in the in-flight bound for
// source (503): weight is n, or more for a request whose decoding costs more
// than its events (otlpCount.weight), and at most MaxInFlight. Call it once
// the body is read and counted and before anything is decoded or split;
// call release when the request is answered. what names the events in the
// message ("events", "log records").
func (s *Server) admit(source string, n, weight int, what string) (release func(), err error) {
	if n > s.cfg.MaxEventsPerRequest {
		return nil, errorf(http.StatusRequestEntityTooLarge, "too_many_events",
			"the request holds %d %s; this log takes at most %d per request: split the batch into requests of at most %d", n, what, s.cfg.MaxEventsPerRequest, s.cfg.MaxEventsPerRequest)
	}
	if held, r := s.inflight.take(source, 0, weight); r != taken {
		return nil, overloaded(&s.inflight, source, held, r, "overloaded", "overloaded_writer", "events in flight")
	}
	return func() { s.inflight.give(source, weight) }, nil
}

// A bodyClaim is what one request holds of the body budget: its body's
// buffer as it grows, and for OTLP the copies of resources and scopes.
type bodyClaim struct {
	s      *Server
	source string
	held   int64
}

// take reserves n more bytes for the request, or answers 503.
func (c *bodyClaim) take(n int64) error {
	if n <= 0 {
		return nil // a buffer that grows within what the claim counts already
	}
	held, r := c.s.bodies.take(c.source, c.held, n)
	if r != taken {
		return overloaded(&c.s.bodies, c.source, held, r, "overloaded_bytes", "overloaded_writer_bytes", "bytes of request bodies held")
	}
	c.held += n
	return nil
}

// release gives back all the request holds; a second call gives nothing.
func (c *bodyClaim) release() {
	c.s.bodies.give(c.source, c.held)
	c.held = 0
}
