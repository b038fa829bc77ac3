package auditor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// An Alert is the JSON body an Alerter POSTs.
type Alert struct {
	Kind     Kind           `json:"kind"`
	Severity string         `json:"severity"` // critical, warning, info
	Origin   string         `json:"origin"`
	Time     time.Time      `json:"time"`
	Message  string         `json:"message"`
	Evidence string         `json:"evidence,omitempty"`
	Details  map[string]any `json:"details,omitempty"`
}

// AlertFor turns a finding into an alert.
func AlertFor(f Finding) Alert {
	return Alert{Kind: f.Kind, Severity: f.Kind.Severity(), Origin: f.Origin, Time: f.Time,
		Message: f.Message, Evidence: f.Evidence, Details: f.Details}
}

// Alerter POSTs alerts to a webhook from a goroutine of its own, with a
// bounded queue and retries with exponential backoff, so that a slow or
// dead webhook never holds up verification: Send never blocks, and drops
// the alert (counting it) when the queue is full.
type Alerter struct {
	url     string
	hc      *http.Client
	queue   chan Alert
	metrics *Metrics
	// Backoff: the first retry waits MinBackoff, each next one twice as
	// long up to MaxBackoff; an alert is given up after Attempts tries.
	minBackoff, maxBackoff time.Duration
	attempts               int

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex // guards dropped, failed
	dropped int
	failed  int
}

// AlerterConfig configures NewAlerter; zero values take the defaults.
type AlerterConfig struct {
	URL        string
	HTTPClient *http.Client  // default: 10 s timeout
	QueueSize  int           // default 1,000
	MinBackoff time.Duration // default 500 ms
	MaxBackoff time.Duration // default 1 min
	Attempts   int           // default 10
	Metrics    *Metrics

	// RootCAs are the CAs trusted for an HTTPS URL when HTTPClient is nil
	// (default: the system's roots).
	RootCAs *x509.CertPool
}

// NewAlerter starts an Alerter. Close it to deliver what is queued.
func NewAlerter(cfg AlerterConfig) *Alerter {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
		if cfg.RootCAs != nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
			cfg.HTTPClient.Transport = t
		}
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1000
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 10
	}
	a := &Alerter{url: cfg.URL, hc: cfg.HTTPClient, queue: make(chan Alert, cfg.QueueSize), metrics: cfg.Metrics,
		minBackoff: cfg.MinBackoff, maxBackoff: cfg.MaxBackoff, attempts: cfg.Attempts, done: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	go a.run()
	return a
}

// Send queues an alert; it never blocks.
func (a *Alerter) Send(al Alert) {
	select {
	case a.queue <- al:
	default:
		a.mu.Lock()
		a.dropped++
		a.mu.Unlock()
		if a.metrics != nil {
			a.metrics.alerts.WithLabelValues("dropped").Inc()
		}
	}
}

// Close stops taking alerts and delivers those queued, giving up on what is
// left when ctx ends. It returns how many alerts were dropped or failed.
func (a *Alerter) Close(ctx context.Context) (dropped, failed int) {
	close(a.queue)
	select {
	case <-a.done:
	case <-ctx.Done():
		a.cancel()
		<-a.done
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dropped, a.failed
}

func (a *Alerter) run() {
	defer close(a.done)
	for al := range a.queue {
		err := a.deliver(al)
		result := "sent"
		if err != nil {
			result = "failed"
			a.mu.Lock()
			a.failed++
			a.mu.Unlock()
		}
		if a.metrics != nil {
			a.metrics.alerts.WithLabelValues(result).Inc()
		}
	}
}

func (a *Alerter) deliver(al Alert) error {
	body, err := json.Marshal(al)
	if err != nil {
		return err
	}
	wait := a.minBackoff
	for try := 1; ; try++ {
		err = a.post(body)
		if err == nil || try >= a.attempts {
			return err
		}
		select {
		case <-time.After(wait):
		case <-a.ctx.Done():
			return err
		}
		wait = min(2*wait, a.maxBackoff)
	}
}

func (a *Alerter) post(body []byte) error {
	req, err := http.NewRequestWithContext(a.ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
