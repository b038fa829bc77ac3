package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera/client"
)

// maxPollBody bounds what the poller reads from a log: a checkpoint (at
// most checkpoint.MaxCheckpointSize) or a hash tile (8 KiB).
const maxPollBody = 64 << 10

// pollConcurrency is how many followed logs are polled at once.
const pollConcurrency = 8

// poll is the poller: every PollInterval it fetches the checkpoint of every
// followed log, and when it is ahead of the state, builds the consistency
// proof from the log's tiles and adds it through the same path as a pushed
// request (without rate limits). A log that never pushes is still witnessed.
// The list of followed logs is read at each round, so a reload applies at
// the next one.
func (w *Witness) poll() {
	defer close(w.pollDone)
	hc := *w.cfg.HTTPClient
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = limitedTransport{base}
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
	for {
		w.pollRound(&hc)
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Witness) pollRound(hc *http.Client) {
	var followed []*knownLog
	for _, kl := range w.logs.Load().byOrigin {
		if kl.url != "" {
			followed = append(followed, kl)
		}
	}
	sort.Slice(followed, func(i, j int) bool { return followed[i].origin < followed[j].origin })
	sem := make(chan struct{}, pollConcurrency)
	var wg sync.WaitGroup
	for _, kl := range followed {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(w.ctx, w.cfg.PollInterval+30*time.Second)
			defer cancel()
			result, err := w.pollLog(ctx, hc, kl)
			if err != nil {
				w.log.Warn("couldn't poll a followed log", "origin", kl.origin, "url", kl.url, "err", err)
				result = "error"
			}
			w.metrics.polls.WithLabelValues(result).Inc()
		}()
	}
	wg.Wait()
}

// PollOnce polls every followed log once, now. For tests and tools.
func (w *Witness) PollOnce() {
	hc := *w.cfg.HTTPClient
	if hc.Transport == nil {
		hc.Transport = http.DefaultTransport
	}
	hc.Transport = limitedTransport{hc.Transport}
	w.pollRound(&hc)
}

func (w *Witness) pollLog(ctx context.Context, hc *http.Client, kl *knownLog) (string, error) {
	u, err := url.Parse(strings.TrimSuffix(kl.url, "/") + "/")
	if err != nil {
		return "", err
	}
	f, err := client.NewHTTPFetcher(u, hc)
	if err != nil {
		return "", err
	}
	signed, err := f.ReadCheckpoint(ctx)
	if err != nil {
		return "", fmt.Errorf("couldn't fetch the checkpoint: %w", err)
	}
	c, _, err := parseSigned(signed)
	if err != nil {
		return "", err
	}
	if c.Origin != kl.origin {
		return "", fmt.Errorf("the log at %s serves a checkpoint for origin %q", kl.url, c.Origin)
	}
	rec := w.state.lookup(kl.origin)
	var old uint64
	if rec != nil {
		old = rec.Size
		if c.Size < rec.Size || c.Size == rec.Size && bytes.Equal(c.Hash, rec.Root) {
			return "unchanged", nil
		}
	}
	var proof [][]byte
	if old > 0 && old < c.Size {
		pb, err := client.NewProofBuilder(ctx, c.Size, f.ReadTile)
		if err != nil {
			return "", fmt.Errorf("couldn't read the log's tiles: %w", err)
		}
		if proof, err = pb.ConsistencyProof(ctx, old, c.Size); err != nil {
			return "", fmt.Errorf("couldn't build a consistency proof from the log's tiles: %w", err)
		}
	}
	if _, err := w.add(ctx, AddRequest{Old: old, Proof: proof, Checkpoint: signed}, true); err != nil {
		var sizeErr *sizeConflictError
		if errors.As(err, &sizeErr) {
			return "unchanged", nil // a push got there first; next round
		}
		return "", err
	}
	return "cosigned", nil
}

// limitedTransport refuses response bodies larger than maxPollBody, so a
// log cannot make the poller use unbounded memory.
type limitedTransport struct{ base http.RoundTripper }

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxPollBody {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: response of %d bytes is larger than %d", r.URL, resp.ContentLength, maxPollBody)
	}
	resp.Body = &limitedBody{r: io.LimitReader(resp.Body, maxPollBody+1), c: resp.Body, url: r.URL.String()}
	return resp, nil
}

type limitedBody struct {
	r   io.Reader
	c   io.Closer
	n   int64
	url string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > maxPollBody {
		return n, fmt.Errorf("%s: response larger than %d bytes", b.url, maxPollBody)
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.c.Close() }
