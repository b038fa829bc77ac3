package log

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// On MySQL (and S3, which sequences in MySQL), Tessera v1.0.4 asks the
// witnesses for cosignatures while it holds the database row lock that
// every batch of new entries needs: writes stall for the witness round
// trip. With witnesses that answer, that is a few milliseconds a second.
// With a quorum that does not answer, every attempt holds the lock for the
// whole witness timeout, and Tessera tries again at once: writes nearly
// stop (measured: 26 entries/s against 6,155 with bench/mysql-witness.sh).
//
// A witnessBreaker keeps a witness that did not answer (a timeout, or no
// HTTP answer at all) out of the lock: until it answers again, requests to
// it fail at once, without the network, and a probe outside the lock
// resends its last add-checkpoint request every breakerProbeEvery. A
// witness must take the same request twice (it cosigns the same checkpoint
// again, or answers 409 with its size), and any HTTP answer to the probe
// shows it is back: the next checkpoint asks it again. So a quorum that is
// down costs one witness timeout, not all the writes; the log publishes
// again by itself once the quorum answers.
type witnessBreaker struct {
	next    http.RoundTripper
	timeout time.Duration // of a probe
	log     *slog.Logger

	mu   sync.Mutex
	down map[string]*downWitness // by add-checkpoint URL
}

// A downWitness is a witness whose last request got no answer.
type downWitness struct {
	name   string
	since  time.Time
	body   []byte      // its last request, resent as the probe
	header http.Header // and its header
}

// breakerProbeEvery is how often a witness that is down is probed.
const breakerProbeEvery = time.Second

// errWitnessDown fails a request to a witness that is down, at once.
var errWitnessDown = errors.New("skipped: the witness did not answer its last request; it is asked again once it answers a probe")

func newWitnessBreaker(next http.RoundTripper, timeout time.Duration, logger *slog.Logger) *witnessBreaker {
	return &witnessBreaker{next: next, timeout: timeout, log: logger, down: map[string]*downWitness{}}
}

// isDown says whether requests to url are skipped.
func (b *witnessBreaker) isDown(url string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.down[url] != nil
}

// failed marks the witness at url down after a request that got no answer,
// and starts probing it.
func (b *witnessBreaker) failed(ctx context.Context, name, url string, body []byte, header http.Header) {
	b.mu.Lock()
	if b.down[url] != nil {
		b.mu.Unlock()
		return
	}
	w := &downWitness{name: name, since: time.Now(), body: body, header: header.Clone()}
	b.down[url] = w
	b.mu.Unlock()
	b.log.Warn("witness is not answering: checkpoints skip it (without holding the database lock) until it answers a probe, sent every second", "witness", name, "url", url)
	go b.probe(ctx, url, w)
}

// probe resends w's last request until it gets an HTTP answer or ctx ends.
func (b *witnessBreaker) probe(ctx context.Context, url string, w *downWitness) {
	t := time.NewTicker(breakerProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, b.timeout)
		req, err := http.NewRequestWithContext(pctx, http.MethodPost, url, bytes.NewReader(w.body))
		if err != nil {
			cancel()
			return
		}
		req.Header = w.header.Clone()
		resp, err := b.next.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		cancel()
		if err != nil {
			continue
		}
		b.mu.Lock()
		delete(b.down, url)
		b.mu.Unlock()
		b.log.Info("witness answers again: checkpoints ask it again", "witness", w.name, "status", resp.StatusCode, "down_for", time.Since(w.since).Round(time.Second))
		return
	}
}
