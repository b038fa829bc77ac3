package witness

import (
	"math"
	"sync"
	"time"
)

// A bucket is a token bucket: it holds up to burst tokens and gains rate
// tokens a second; a request takes one.
type bucket struct {
	rate, burst float64

	mu     sync.Mutex // guards tokens and last
	tokens float64
	last   time.Time
}

func newBucket(rate, burst float64, now time.Time) *bucket {
	return &bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *bucket) refill(now time.Time) {
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = math.Min(b.burst, b.tokens+d*b.rate)
	}
	b.last = now
}

// take takes a token if there is one.
func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// give returns a token taken by a request that did not go through.
func (b *bucket) give() {
	b.mu.Lock()
	b.tokens = math.Min(b.burst, b.tokens+1)
	b.mu.Unlock()
}

// wait is how long until the next token, rounded up to a second.
func (b *bucket) wait(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens >= 1 || b.rate <= 0 {
		return 1
	}
	return int(math.Ceil((1 - b.tokens) / b.rate))
}

// limiter charges requests that advance a log's state: one bucket per
// origin, sized from the log's qpd, and one for the whole witness. A request
// the witness answers from memory (a repeat of what it already cosigned)
// costs nothing.
//
// The per-log burst is a minute's worth of requests, and at least
// minBurst: a log that publishes about every second within its qpd, with the
// jitter of a real scheduler, never meets the limit, while a log that sends
// far more than its qpd is slowed to it within a minute.
type limiter struct {
	now         func() time.Time
	globalRate  float64 // requests a second; 0 means no global limit
	globalBurst float64

	mu     sync.Mutex // guards logs and global
	logs   map[string]*bucket
	global *bucket
}

const minBurst = 10

func newLimiter(globalRate float64, now func() time.Time) *limiter {
	l := &limiter{now: now, globalRate: globalRate, globalBurst: math.Max(globalRate, minBurst), logs: map[string]*bucket{}}
	if globalRate > 0 {
		l.global = newBucket(globalRate, l.globalBurst, now())
	}
	return l
}

// logBucket returns origin's bucket for qpd, replacing it if qpd changed
// (a reload). qpd 0 (a log only followed) is treated as one a second.
func (l *limiter) logBucket(origin string, qpd uint64) *bucket {
	if qpd == 0 {
		qpd = 86400
	}
	rate := float64(qpd) / 86400
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.logs[origin]
	if !ok || b.rate != rate {
		b = newBucket(rate, math.Max(minBurst, math.Ceil(rate*60)), l.now())
		l.logs[origin] = b
	}
	return b
}

// take charges one request to origin and to the witness. When it refuses,
// retryAfter is the seconds to wait and nothing is charged.
func (l *limiter) take(origin string, qpd uint64) (ok bool, retryAfter int) {
	now := l.now()
	b := l.logBucket(origin, qpd)
	if !b.take(now) {
		return false, b.wait(now)
	}
	if l.global != nil && !l.global.take(now) {
		b.give()
		return false, l.global.wait(now)
	}
	return true, 0
}

// refund gives back what take charged, for a request that then failed.
func (l *limiter) refund(origin string, qpd uint64) {
	l.logBucket(origin, qpd).give()
	if l.global != nil {
		l.global.give()
	}
}
