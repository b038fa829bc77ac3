package log

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// GET /v1/status is what the web page shows about the log: its origin and
// size, the checkpoint and when it was published, what each witness of the
// policy last cosigned (as the witness's monitoring endpoint tells it, so
// that the page verifies the cosignature itself), and the tree's size over
// the last hour (every 5 s, and now) for a chart of the append rate.

// Status is the answer of GET /v1/status.
type Status struct {
	Origin     string          `json:"origin"`
	Size       uint64          `json:"size"`
	Checkpoint string          `json:"checkpoint"`
	Published  string          `json:"published,omitempty"`
	Witnesses  []WitnessStatus `json:"witnesses"`
	Rate       []SizeSample    `json:"rate"`
}

// WitnessStatus is one witness of the policy: the checkpoint it last
// cosigned for this log, as its GET <url>/<hex SHA-256 of origin>/checkpoint
// answered, or why there is none.
type WitnessStatus struct {
	Name       string `json:"name"`
	URL        string `json:"url,omitempty"`
	Checkpoint string `json:"checkpoint,omitempty"`
	Error      string `json:"error,omitempty"`
}

// SizeSample is the tree's size at a time.
type SizeSample struct {
	Time string `json:"time"`
	Size uint64 `json:"size"`
}

const (
	sampleEvery      = 5 * time.Second
	samplesKept      = 721 // an hour
	witnessStatusTTL = 10 * time.Second
	witnessTimeout   = 3 * time.Second
)

// statusCache keeps the size samples and what the witnesses last said.
type statusCache struct {
	s  *Server
	hc *http.Client

	mu      sync.Mutex
	samples []SizeSample

	wmu       sync.Mutex
	witnesses []WitnessStatus
	fetched   time.Time
}

func newStatusCache(s *Server, hc *http.Client) *statusCache {
	if hc == nil {
		hc = http.DefaultClient
	}
	// A witness is someone else's server: a redirect from it is not
	// followed, so that it cannot point the log at an address inside the
	// log's network and have what the log read there published here.
	hc = &http.Client{Transport: hc.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return &statusCache{s: s, hc: hc}
}

// sample records the tree's size every sampleEvery.
func (c *statusCache) sample(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		if n, err := c.s.integratedSize(); err == nil {
			c.mu.Lock()
			c.samples = append(c.samples, SizeSample{Time: time.Now().UTC().Format(time.RFC3339), Size: n})
			if len(c.samples) > samplesKept {
				c.samples = append(c.samples[:0], c.samples[len(c.samples)-samplesKept:]...)
			}
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// witnessStatus asks the policy's witnesses what they last cosigned, at
// most once every witnessStatusTTL.
func (c *statusCache) witnessStatus(ctx context.Context, origin string) []WitnessStatus {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if time.Since(c.fetched) < witnessStatusTTL && c.witnesses != nil {
		return c.witnesses
	}
	ws := make([]WitnessStatus, len(c.s.policy.Witnesses))
	sum := sha256.Sum256([]byte(origin))
	var wg sync.WaitGroup
	for i, pw := range c.s.policy.Witnesses {
		ws[i] = WitnessStatus{Name: pw.Name, URL: pw.URL}
		if pw.URL == "" {
			ws[i].Error = "the policy gives no URL for this witness"
			continue
		}
		wg.Go(func() {
			b, err := c.get(ctx, strings.TrimSuffix(pw.URL, "/")+"/"+hex.EncodeToString(sum[:])+"/checkpoint")
			if err == nil {
				err = isCheckpointOf(b, origin)
			}
			if err != nil {
				ws[i].Error = err.Error()
				return
			}
			ws[i].Checkpoint = string(b)
		})
	}
	wg.Wait()
	c.witnesses, c.fetched = ws, time.Now()
	return ws
}

func (c *statusCache) get(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, witnessTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the witness did not answer: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, checkpoint.MaxCheckpointSize+1))
	if err != nil {
		return nil, fmt.Errorf("couldn't read the witness's answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("the witness has cosigned no checkpoint of this log yet")
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the witness answered %s", resp.Status)
	case len(b) > checkpoint.MaxCheckpointSize:
		return nil, fmt.Errorf("the witness's checkpoint is larger than %d bytes", checkpoint.MaxCheckpointSize)
	}
	return b, nil
}

// isCheckpointOf checks that a witness's answer is a signed checkpoint of
// the log's origin, before the log passes it on: the page verifies the
// cosignature itself, but the log publishes nothing else in its name.
func isCheckpointOf(b []byte, origin string) error {
	i := bytes.Index(b, []byte("\n\n"))
	if i < 0 {
		return fmt.Errorf("the witness's answer is not a signed checkpoint")
	}
	c, err := checkpoint.Parse(b[:i+1])
	if err != nil {
		return fmt.Errorf("the witness's answer is not a signed checkpoint: %w", err)
	}
	if c.Origin != origin {
		return fmt.Errorf("the witness answered with a checkpoint of another log (%q)", c.Origin)
	}
	return nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	cp, err := s.reader.ReadCheckpoint(r.Context())
	if err != nil {
		s.fail(w, r, errorf(http.StatusServiceUnavailable, "no_checkpoint", "the log has published no checkpoint yet"))
		return
	}
	st := Status{Checkpoint: string(cp), Witnesses: []WitnessStatus{}}
	if i := bytes.Index(cp, []byte("\n\n")); i >= 0 {
		if c, err := checkpoint.Parse(cp[:i+1]); err == nil {
			st.Origin, st.Size = c.Origin, c.Size
		}
	}
	if age, err := s.backend.checkpointAge(r.Context()); err == nil {
		st.Published = time.Now().Add(-age).UTC().Format(time.RFC3339)
	}
	if len(s.policy.Witnesses) > 0 {
		st.Witnesses = s.status.witnessStatus(s.ctx, st.Origin)
	}
	s.status.mu.Lock()
	st.Rate = append([]SizeSample{}, s.status.samples...)
	s.status.mu.Unlock()
	if n, err := s.integratedSize(); err == nil {
		st.Rate = append(st.Rate, SizeSample{Time: time.Now().UTC().Format(time.RFC3339Nano), Size: n})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, st)
}
