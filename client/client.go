// Package client is the Go library a service embeds to write to a Tidemark
// log and keep proof of what it wrote.
//
// Submit sends an event (POST /v1/events) and returns its index in the log,
// durable once returned. With [Wait] it returns when a checkpoint cosigned by
// the policy's quorum of witnesses covers the event, with a receipt: the
// event's leaf and a C2SP tlog-proof@v1 that [Verify] checks offline, with
// nothing but the log's policy, forever. Submit checks that each receipt's
// leaf holds the event it sent, under the key it sent ([ErrNotOurEvent]
// otherwise): a receipt for another event proves nothing about this one.
//
// Delivery is at least once, without duplicates: Submit retries a 503 or 429
// (after the server's Retry-After) and transport errors, with backoff, and
// every attempt of one Submit carries the same Idempotency-Key, so the log
// answers a retry with the first index instead of logging the event twice.
// Any other refusal (400, 401, 403, 413, ...) is returned at once, as an
// *[Error]: sending the same request again would be refused the same way.
//
// Over HTTPS, a log whose certificate a private CA issued is trusted with
// [Options].RootCAs ([CertPool] reads the CA's PEM file), and a log that
// authenticates writers by TLS client certificate (`tidemark log
// --tls-client-ca`) is given one with [Options].Certificate: its subject's
// common name is then the source the log records, and no token is needed.
//
// Search finds events by actor, action, resource, source, outcome, time and
// words (GET /v1/search), a page at a time (SearchPages follows them). A hit
// is the log's word: [CheckHit], with the entry's Receipt and [Verify], proves
// it. [Options].ReadToken is the token of a log that protects its entries.
//
// A [Client] is safe for concurrent use. The package imports only checkpoint
// of this module, and does not log: it returns errors.
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// Options configure a Client. The zero value is usable.
type Options struct {
	// HTTPClient sends the requests (default: a client with no timeout of
	// its own; bound calls with their context).
	HTTPClient *http.Client
	// RootCAs are the certificate authorities an https log's certificate
	// must chain to (default: the system's roots). CertPool returns the
	// system's roots plus a private CA's.
	RootCAs *x509.CertPool
	// Certificate, if set, is presented to the log as a TLS client
	// certificate. A log that trusts its CA for writers records the
	// certificate's subject common name as the source of what this client
	// writes. RootCAs and Certificate configure the client New makes; with
	// HTTPClient set, put them in its transport instead (New refuses both).
	Certificate *tls.Certificate
	// Token is the bearer token of the writer (`tidemark token`); empty for
	// a log with open writes.
	Token string
	// ReadToken, if set, is the bearer token sent with reads (Search,
	// Receipt) instead of Token: a log started with --read-tokens wants
	// one of those for what the entries hold.
	ReadToken string
	// MaxAttempts bounds the attempts of one call, the first included
	// (default 8). The context bounds them too.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait between attempts when the
	// server does not say how long (default 100 ms and 5 s; doubled at each
	// attempt, with jitter). A Retry-After is honored up to MaxRetryAfter
	// (default 30 s).
	MinBackoff, MaxBackoff, MaxRetryAfter time.Duration
}

// A Client talks to one log.
type Client struct {
	base *url.URL
	opts Options
}

// New returns a client of the log at logURL (e.g. "https://audit.example.com").
// opts may be nil.
func New(logURL string, opts *Options) (*Client, error) {
	u, err := url.Parse(logURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: log URL %q is not an absolute http or https URL", logURL)
	}
	c := &Client{base: u}
	if opts != nil {
		c.opts = *opts
	}
	switch {
	case c.opts.HTTPClient != nil && (c.opts.RootCAs != nil || c.opts.Certificate != nil):
		return nil, errors.New("client: Options.RootCAs and Options.Certificate configure the HTTP client New makes: with your own HTTPClient, set them in its transport's TLSClientConfig instead")
	case c.opts.HTTPClient == nil && (c.opts.RootCAs != nil || c.opts.Certificate != nil):
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: c.opts.RootCAs, MinVersion: tls.VersionTLS12}
		if c.opts.Certificate != nil {
			t.TLSClientConfig.Certificates = []tls.Certificate{*c.opts.Certificate}
		}
		c.opts.HTTPClient = &http.Client{Transport: t}
	case c.opts.HTTPClient == nil:
		c.opts.HTTPClient = &http.Client{}
	}
	if c.opts.MaxAttempts <= 0 {
		c.opts.MaxAttempts = 8
	}
	if c.opts.MinBackoff <= 0 {
		c.opts.MinBackoff = 100 * time.Millisecond
	}
	if c.opts.MaxBackoff <= 0 {
		c.opts.MaxBackoff = 5 * time.Second
	}
	if c.opts.MaxRetryAfter <= 0 {
		c.opts.MaxRetryAfter = 30 * time.Second
	}
	return c, nil
}

// A Result is the log's answer for one event.
type Result struct {
	Index uint64 `json:"index"`
	// Duplicate: the log had this event already (a retry, by key or id),
	// and Index is the first answer's.
	Duplicate bool `json:"duplicate,omitempty"`
	// Receipt is set when the call waited (Wait).
	Receipt *checkpoint.Receipt `json:"receipt,omitempty"`
}

// A SubmitOption changes one Submit or SubmitBatch.
type SubmitOption func(*submitOptions)

type submitOptions struct {
	wait bool
	key  string
}

// Wait makes the call return only once a checkpoint cosigned by the
// policy's quorum covers the events, with their receipts. The log bounds
// the wait (its --witness-wait-timeout, 10 s by default); past it the call
// fails with an *Error of status 504 whose Results hold the indexes: the
// events are logged, fetch their receipts later with Receipt.
func Wait() SubmitOption { return func(o *submitOptions) { o.wait = true } }

// IdempotencyKey sets the key that makes retries of this call safe (default:
// a random key per call). Use your own to make retries across process
// restarts safe too. For a batch, event n gets the key "KEY/n".
func IdempotencyKey(key string) SubmitOption { return func(o *submitOptions) { o.key = key } }

// An Error is an answer of the log other than success.
type Error struct {
	Status  int    // HTTP status
	Message string // the log's "error"
	// Results, for a 504 after Wait: the events are logged, at these
	// indexes, but no witnessed checkpoint covered them in time.
	Results []Result
}

func (e *Error) Error() string {
	return fmt.Sprintf("client: the log answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Submit sends one event, a JSON object: a []byte or json.RawMessage is sent
// as is, anything else is encoded with encoding/json first. See Wait and
// IdempotencyKey.
func (c *Client) Submit(ctx context.Context, event any, opts ...SubmitOption) (Result, error) {
	body, err := eventBytes(event)
	if err != nil {
		return Result{}, err
	}
	// The log takes a JSON array as a batch and logs its elements: an
	// answer Submit could only report as an error, for logged events.
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Result{}, errors.New("client: Submit sends one event, a JSON object; use SubmitBatch for several")
	}
	var res []Result
	if err := c.submit(ctx, "application/json", [][]byte{body}, body, false, opts, &res); err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// SubmitBatch sends several events in one request (NDJSON); the log takes
// them all or none. Results are in the order of events.
func (c *Client) SubmitBatch(ctx context.Context, events []any, opts ...SubmitOption) ([]Result, error) {
	if len(events) == 0 {
		return nil, errors.New("client: SubmitBatch needs at least one event")
	}
	var body bytes.Buffer
	sent := make([][]byte, len(events))
	for i, e := range events {
		b, err := eventBytes(e)
		if err != nil {
			return nil, fmt.Errorf("client: event %d: %w", i, err)
		}
		sent[i] = b
		if bytes.ContainsAny(b, "\n\r") {
			// Compact it: NDJSON is one event per line.
			var cb bytes.Buffer
			if err := json.Compact(&cb, b); err != nil {
				return nil, fmt.Errorf("client: event %d is not JSON: %w", i, err)
			}
			b = cb.Bytes()
		}
		body.Write(b)
		body.WriteByte('\n')
	}
	var res []Result
	if err := c.submit(ctx, "application/x-ndjson", sent, body.Bytes(), true, opts, &res); err != nil {
		return nil, err
	}
	return res, nil
}

func eventBytes(event any) ([]byte, error) {
	switch e := event.(type) {
	case []byte:
		return e, nil
	case json.RawMessage:
		return e, nil
	}
	b, err := json.Marshal(event)
	if err != nil {
		return nil, fmt.Errorf("client: couldn't encode the event: %w", err)
	}
	return b, nil
}

// submit posts body (the events sent), retrying, and decodes the results.
func (c *Client) submit(ctx context.Context, contentType string, sent [][]byte, body []byte, batch bool, opts []SubmitOption, out *[]Result) error {
	var o submitOptions
	for _, f := range opts {
		f(&o)
	}
	if o.key == "" {
		o.key = newKey()
	}
	u := c.base.JoinPath("v1", "events")
	if o.wait {
		u.RawQuery = "wait=witnessed"
	}
	var answer struct {
		Index     *uint64             `json:"index"` // nil: the answer has no index
		Duplicate bool                `json:"duplicate"`
		Receipt   *checkpoint.Receipt `json:"receipt"`
		Results   []Result            `json:"results"`
		Error     string              `json:"error"`
	}
	status, err := c.do(ctx, http.MethodPost, u.String(), contentType, body, map[string]string{"Idempotency-Key": o.key}, &answer)
	if err != nil {
		return err
	}
	results := answer.Results
	if !batch {
		results = nil
		if answer.Index != nil {
			results = []Result{{Index: *answer.Index, Duplicate: answer.Duplicate, Receipt: answer.Receipt}}
		}
	}
	if status != http.StatusOK {
		e := &Error{Status: status, Message: answer.Error}
		// Only a 504 after Wait means logged: a refusal has no index, and
		// its results, if any, are not the caller's.
		if status == http.StatusGatewayTimeout && o.wait && len(results) == len(sent) {
			e.Results = results
		}
		return e
	}
	if len(results) == 0 {
		return fmt.Errorf("client: the log answered %d without an index: is %s a Tidemark log?", status, c.base)
	}
	if len(results) != len(sent) {
		return fmt.Errorf("client: the log answered %d results for %d events", len(results), len(sent))
	}
	if o.wait {
		for i, r := range results {
			if r.Receipt == nil || r.Receipt.Index != r.Index {
				return fmt.Errorf("client: the log answered index %d without its receipt", r.Index)
			}
			key := o.key
			if batch {
				key += "/" + strconv.Itoa(i)
			}
			if err := checkReceiptHolds(r.Receipt, sent[i], key); err != nil {
				return fmt.Errorf("client: event %d: %w", i, err)
			}
		}
	}
	*out = results
	return nil
}

// ErrNotOurEvent is wrapped when the log answers with a receipt whose leaf
// does not hold the event that was sent: the log answered for another
// event, and the receipt proves nothing about this one.
var ErrNotOurEvent = errors.New("the receipt's leaf does not hold the event sent")

// checkReceiptHolds checks that a receipt's leaf is an event leaf holding
// the event sent (compared in canonical JSON) under the idempotency key
// sent, or a commitment leaf whose opening holds it.
func checkReceiptHolds(r *checkpoint.Receipt, event []byte, key string) error {
	want, err := checkpoint.CanonicalEvent(event)
	if err != nil {
		return fmt.Errorf("%w: the event sent is not an I-JSON object: %v", ErrNotOurEvent, err)
	}
	// The leaf, or what its opening opens for a commitment leaf.
	l, err := r.Event()
	if err != nil {
		return fmt.Errorf("%w: entry %d shows no event: %v", ErrNotOurEvent, r.Index, err)
	}
	if !bytes.Equal(l.Event, want.Canonical) {
		return fmt.Errorf("%w: entry %d holds %.200s", ErrNotOurEvent, r.Index, l.Event)
	}
	if l.IdempotencyKey != key {
		return fmt.Errorf("%w: entry %d was logged under the idempotency key %q, not %q", ErrNotOurEvent, r.Index, l.IdempotencyKey, key)
	}
	return nil
}

// Receipt fetches the receipt of the entry at index, against the log's
// latest witnessed checkpoint. An entry logged but not yet covered by one
// (503) is retried like any 503. It does not verify the receipt: call
// Verify.
func (c *Client) Receipt(ctx context.Context, index uint64) (*checkpoint.Receipt, error) {
	u := c.base.JoinPath("v1", "receipt", strconv.FormatUint(index, 10))
	var raw json.RawMessage
	status, err := c.do(ctx, http.MethodGet, u.String(), "", nil, nil, &raw)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(raw, &e)
		return nil, &Error{Status: status, Message: e.Error}
	}
	r, err := checkpoint.ParseReceipt(raw)
	if err != nil {
		return nil, fmt.Errorf("client: the log's receipt: %w", err)
	}
	if r.Index != index {
		return nil, fmt.Errorf("client: asked for the receipt of %d, got one for %d", index, r.Index)
	}
	return &r, nil
}

// Policy fetches the log's trust policy (GET /v1/policy). A verifier should
// get its policy from a source it trusts rather than from the log it checks;
// this is for bootstrapping and for comparing.
func (c *Client) Policy(ctx context.Context) ([]byte, error) {
	var raw json.RawMessage
	status, err := c.do(ctx, http.MethodGet, c.base.JoinPath("v1", "policy").String(), "", nil, nil, &raw)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, &Error{Status: status, Message: string(raw)}
	}
	return raw, nil
}

// Verified is what Verify proved: the entry's leaf is at Index in the log
// whose checkpoint is Checkpoint, which Cosigners (policy name: cosignature
// time) vouched for.
type Verified struct {
	Index      uint64
	Checkpoint checkpoint.Checkpoint
	Cosigners  map[string]time.Time
	// ExistedBy is the time by which a quorum of the witnesses had cosigned
	// (Policy.QuorumCosignedBy): the entry existed by then, on the word of
	// a quorum, whatever one witness's clock says. Zero for "quorum none".
	ExistedBy time.Time
	// Leaf is the parsed event leaf: the receipt's leaf, or what its
	// opening opens when the leaf is a commitment leaf. Nil for an entry
	// that shows no event: raw bytes written with POST /add, or a
	// commitment leaf whose receipt carries no opening (Committed is then
	// set).
	Leaf *checkpoint.Leaf
	// Committed is set when the entry is a commitment leaf: the event's
	// received time and source, and its commitment.
	Committed *checkpoint.CommitmentLeaf
}

// Verify checks a receipt offline against a policy: the checkpoint's
// signature by one of the log's keys (old keys of a rotation included, as
// the policy lists them), a quorum of cosignatures, no signature the policy
// cannot check, and the inclusion proof of the leaf. The error says which
// failed; it wraps checkpoint.ErrMalformed, ErrUnverified, ErrQuorum or
// ErrProof, or checkpoint.ErrOpening when the receipt's opening does not
// open its commitment leaf.
func Verify(policy *checkpoint.Policy, r *checkpoint.Receipt) (*Verified, error) {
	if r == nil {
		return nil, errors.New("client: no receipt")
	}
	c, cos, err := r.Verify(policy)
	if err != nil {
		return nil, err
	}
	v := &Verified{Index: r.Index, Checkpoint: c, Cosigners: cos}
	v.ExistedBy, _ = policy.QuorumCosignedBy(cos)
	if c, err := checkpoint.ParseCommitmentLeaf(r.Leaf); err == nil {
		v.Committed = &c
	}
	// r.Verify has checked an opening: Event fails only for an entry
	// that shows no event.
	if l, err := r.Event(); err == nil {
		v.Leaf = &l
	}
	return v, nil
}

// do sends a request, retrying transport errors, 429 and 503, and decodes a
// JSON answer into out (a *json.RawMessage takes any body). It returns the
// final status.
func (c *Client) do(ctx context.Context, method, u, contentType string, body []byte, header map[string]string, out any) (int, error) {
	return c.doRetry(ctx, true, method, u, contentType, body, header, out)
}

// doRetry is do; with retry503 false, a 503 is an answer like any other
// (a log without a search index answers 503 for good).
func (c *Client) doRetry(ctx context.Context, retry503 bool, method, u, contentType string, body []byte, header map[string]string, out any) (int, error) {
	var lastErr error
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return 0, fmt.Errorf("client: %w", err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		tok := c.opts.Token
		if method == http.MethodGet && c.opts.ReadToken != "" {
			tok = c.opts.ReadToken
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		var wait time.Duration
		resp, err := c.opts.HTTPClient.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("client: %s %s: %w", method, u, ctx.Err())
			}
			if isTLSRefusal(err) {
				return 0, fmt.Errorf("client: %s %s: %w", method, u, err) // the same again would fail the same way
			}
			lastErr = fmt.Errorf("client: %s %s: %w", method, u, err)
		} else {
			b, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
			resp.Body.Close()
			switch {
			case rerr != nil:
				lastErr = fmt.Errorf("client: reading the answer to %s %s: %w", method, u, rerr)
			case resp.StatusCode == http.StatusTooManyRequests || (resp.StatusCode == http.StatusServiceUnavailable && retry503):
				lastErr = &Error{Status: resp.StatusCode, Message: errorMessage(b)}
				wait = retryAfter(resp.Header.Get("Retry-After"), c.opts.MaxRetryAfter)
			default:
				if raw, ok := out.(*json.RawMessage); ok {
					*raw = b
					return resp.StatusCode, nil
				}
				if err := json.Unmarshal(b, out); err != nil {
					return resp.StatusCode, &Error{Status: resp.StatusCode, Message: fmt.Sprintf("not a JSON answer (%v): %.200s", err, b)}
				}
				return resp.StatusCode, nil
			}
		}
		if attempt >= c.opts.MaxAttempts {
			return 0, fmt.Errorf("%w (gave up after %d attempts)", lastErr, attempt)
		}
		if wait == 0 {
			wait = backoff(attempt, c.opts.MinBackoff, c.opts.MaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("%w (then: %w)", lastErr, ctx.Err())
		case <-t.C:
		}
	}
}

// CertPool returns the system's trusted roots plus the CA certificates of
// a PEM file: what Options.RootCAs needs to trust a log whose certificate a
// private CA issued. Every PEM block of the file must be a certificate.
func CertPool(pemFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(pemFile)
	if err != nil {
		return nil, fmt.Errorf("client: couldn't read the CA certificates: %w", err)
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", pemFile, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // no system roots here: the file's alone
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// ParseCertificates parses PEM certificates strictly: at least one, every
// block a CERTIFICATE that parses, nothing else but whitespace around them.
// (x509.CertPool.AppendCertsFromPEM skips what it cannot parse, so a
// truncated file would go unnoticed until a handshake failed.)
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		block, rest := pem.Decode(b)
		if block == nil {
			if len(bytes.TrimSpace(b)) > 0 {
				return nil, fmt.Errorf("certificate %d: not PEM (want -----BEGIN CERTIFICATE-----)", n)
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, want only CERTIFICATE blocks", n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n, err)
		}
		certs = append(certs, c)
		b = rest
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return certs, nil
}

// isTLSRefusal reports whether err is a TLS failure that retrying cannot
// fix: the server's certificate did not verify, or the server refused the
// handshake with an alert (such as for the client's certificate).
func isTLSRefusal(err error) bool {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return true
	}
	var oerr *net.OpError
	return errors.As(err, &oerr) && oerr.Op == "remote error" && strings.HasPrefix(oerr.Err.Error(), "tls: ")
}

func errorMessage(b []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(b))
}

// retryAfter reads a Retry-After in seconds (0 if absent or not seconds).
func retryAfter(v string, limit time.Duration) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, limit)
}

// backoff is min * 2^(attempt-1), capped, with up to 50% jitter off.
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo << min(attempt-1, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return d - time.Duration(rand.Int64N(int64(d)/2+1))
}

// newKey returns a random idempotency key.
func newKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand panics rather)
	return "tdm-" + hex.EncodeToString(b[:])
}
