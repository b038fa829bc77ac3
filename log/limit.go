package log

import (
	"net/http"
	"sync"
)

// inflight bounds the events the server holds between reading a request and
// answering it. Tessera's POSIX and MySQL drivers never push back, so
// without this bound an overloaded log would gather requests (and memory)
// without limit.
type inflight struct {
	max int

	mu  sync.Mutex // guards cur
	cur int
}

// acquire reserves n events, or answers 503 with Retry-After. A request
// larger than the bound on its own is admitted when nothing else is in flight,
// so that the body limit, not this bound, decides what fits.
func (l *inflight) acquire(n int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur > 0 && l.cur+n > l.max {
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
