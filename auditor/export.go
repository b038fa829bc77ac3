package auditor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// Export for SIEMs
//
// An [Exporter] is a [Sink] that writes every verified event as an
// [ExportRecord], so a SIEM holds events that were checked on the way in:
// each record carries its index and the witnessed checkpoint (origin, size,
// root hash and the signed note with its cosignatures) whose root the
// event's leaf was checked against. A commitment leaf's record also carries
// its salt: with the event and received and source, anyone re-derives the
// leaf, and with the checkpoint's tiles, its inclusion.
//
// Formats:
//
//   - ndjson: one ExportRecord a line, to a file (appended to), to stdout
//     ("-"), or POSTed to a URL in batches (Content-Type
//     application/x-ndjson, the token as a bearer token).
//   - splunk-hec: Splunk's HTTP Event Collector; the URL is the collector's
//     event endpoint (…/services/collector/event), the token is sent as
//     "Authorization: Splunk <token>", each record is the "event" of a HEC
//     event with "time" (received, in seconds), "host" (the log's origin),
//     "source" "tidemark" and "sourcetype" "tidemark:event". A reply whose
//     "code" is not 0 is a failure.
//   - es-bulk: Elasticsearch's (or OpenSearch's) bulk API; the URL ends in
//     /_bulk (with the index in it, …/audit/_bulk, or not), the token is an
//     API key ("Authorization: ApiKey <token>"). Each record is indexed with
//     _id "<origin>/<index>", so a batch sent twice stores each event once.
//     A reply with "errors": true is a failure, unless every failed item
//     was refused for load (429): then the batch is sent again.
//
// HTTP batches hold at most ExportConfig.BatchBytes of records (one larger
// record goes alone). Redirects are not followed: a 3xx reply fails. A 429 or 5xx reply, or a connection error, is retried
// with exponential backoff (ExportConfig.Backoff, doubling up to 30s, or
// what Retry-After says, up to ExportConfig.Retries times); any other reply
// fails the export with what the server said, and the next check with the
// same state directory offers the same events again.

// Export formats.
const (
	ExportNDJSON    = "ndjson"
	ExportSplunkHEC = "splunk-hec"
	ExportESBulk    = "es-bulk"
)

// An ExportRecord is one verified event as an Exporter writes it.
type ExportRecord struct {
	Index          uint64          `json:"index"`
	Received       string          `json:"received"`
	Source         string          `json:"source"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Event          json.RawMessage `json:"event"`
	// Salt (base64) is set for a commitment leaf: its commitment is
	// SHA-256(salt || the event leaf).
	Salt       []byte           `json:"salt,omitempty"`
	Checkpoint ExportCheckpoint `json:"checkpoint"`
}

// ExportCheckpoint is the witnessed checkpoint in an ExportRecord.
type ExportCheckpoint struct {
	Origin   string `json:"origin"`
	Size     uint64 `json:"size"`
	RootHash string `json:"root_hash"` // base64, as in the note
	Note     string `json:"note"`      // the signed note, with its cosignatures
}

// ExportConfig configures an Exporter.
type ExportConfig struct {
	// Dest is a file path (appended to), "-" for Stdout, or an http(s) URL.
	Dest string
	// Format is ExportNDJSON (default), ExportSplunkHEC or ExportESBulk;
	// the last two need a URL.
	Format string
	// Token is the HEC token, the Elasticsearch API key, or for ndjson
	// over HTTP a bearer token.
	Token string
	// HTTPClient posts batches (default: a client with a minute's timeout).
	HTTPClient *http.Client
	// Stdout is where "-" writes (default os.Stdout).
	Stdout io.Writer
	// BatchBytes bounds an HTTP batch (default 1 MiB).
	BatchBytes int
	// Retries is how many times a batch is retried (default 8); Backoff
	// the first wait (default 500ms).
	Retries int
	Backoff time.Duration
}

// An Exporter is a Sink writing verified events to a file, stdout or a
// SIEM (see ExportConfig).
type Exporter struct {
	cfg ExportConfig
	url *url.URL
}

// NewExporter checks cfg and returns its Exporter.
func NewExporter(cfg ExportConfig) (*Exporter, error) {
	if cfg.Format == "" {
		cfg.Format = ExportNDJSON
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 1 << 20
	}
	if cfg.Retries == 0 {
		cfg.Retries = 8
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: time.Minute}
	}
	// A redirect is a failure: Go's client follows a 301, 302 or 303 with
	// a GET without the batch, and would take the reply at the end for
	// its success; a 307 or 308 sends the batch where Dest did not say.
	hc := *cfg.HTTPClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTPClient = &hc
	e := &Exporter{cfg: cfg}
	if strings.HasPrefix(cfg.Dest, "http://") || strings.HasPrefix(cfg.Dest, "https://") {
		u, err := url.Parse(cfg.Dest)
		if err != nil {
			return nil, fmt.Errorf("export: bad URL %q: %v", cfg.Dest, err)
		}
		e.url = u
	}
	switch cfg.Format {
	case ExportNDJSON:
	case ExportSplunkHEC, ExportESBulk:
		if e.url == nil {
			return nil, fmt.Errorf("export: format %s sends to a URL, not %q: give the %s", cfg.Format, cfg.Dest,
				map[string]string{ExportSplunkHEC: "HTTP Event Collector's URL, ending in /services/collector/event", ExportESBulk: "bulk API's URL, ending in /_bulk"}[cfg.Format])
		}
		if cfg.Format == ExportESBulk && !strings.HasSuffix(e.url.Path, "/_bulk") {
			return nil, fmt.Errorf("export: the es-bulk URL must end in /_bulk (with the index before it, e.g. /audit/_bulk), not %q", e.url.Path)
		}
	default:
		return nil, fmt.Errorf("export: format %q: want ndjson, splunk-hec or es-bulk", cfg.Format)
	}
	if cfg.Dest == "" {
		return nil, errors.New("export: no destination: give a file, - for stdout, or a URL")
	}
	return e, nil
}

// Record returns the ExportRecord of a verified event leaf (nil for an
// erasure).
func Record(v VerifiedLeaf, cp ExportCheckpoint) *ExportRecord {
	if v.Kind == checkpoint.KindErasure {
		return nil
	}
	rec := &ExportRecord{
		Index: v.Index, Received: v.Event.Received.UTC().Format(checkpoint.ReceivedFormat), Source: v.Event.Source,
		IdempotencyKey: v.Event.IdempotencyKey, Event: v.Event.Event, Checkpoint: cp,
	}
	if v.Opening != nil {
		rec.Salt = v.Opening.Salt
	}
	return rec
}

// Ship writes the verified events of leaves (Sink).
func (e *Exporter) Ship(ctx context.Context, cp VerifiedCheckpoint, leaves *LeafReader) error {
	ecp := ExportCheckpoint{Origin: cp.Origin, Size: cp.Size, RootHash: base64.StdEncoding.EncodeToString(cp.Hash), Note: string(cp.Note)}
	if e.url != nil {
		return e.post(ctx, ecp, leaves)
	}
	var w io.Writer = e.cfg.Stdout
	var f *os.File
	if e.cfg.Dest != "-" {
		var err error
		if f, err = os.OpenFile(e.cfg.Dest, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var line []byte
	for {
		v, err := leaves.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		rec := Record(v, ecp)
		if rec == nil {
			continue
		}
		if line, err = json.Marshal(rec); err != nil {
			return err
		}
		bw.Write(line)
		if err := bw.WriteByte('\n'); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if f != nil {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	return nil
}

// post sends the records in batches of at most BatchBytes.
func (e *Exporter) post(ctx context.Context, cp ExportCheckpoint, leaves *LeafReader) error {
	var batch bytes.Buffer
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		err := e.send(ctx, batch.Bytes())
		batch.Reset()
		return err
	}
	for {
		v, err := leaves.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		rec := Record(v, cp)
		if rec == nil {
			continue
		}
		item, err := e.item(rec)
		if err != nil {
			return err
		}
		if batch.Len() > 0 && batch.Len()+len(item) > e.cfg.BatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch.Write(item)
	}
	return flush()
}

// item is one record as the format puts it in a batch, with its newline.
func (e *Exporter) item(rec *ExportRecord) ([]byte, error) {
	var v any = rec
	var prefix []byte
	switch e.cfg.Format {
	case ExportSplunkHEC:
		t, _ := time.Parse(checkpoint.ReceivedFormat, rec.Received)
		v = hecEvent{Time: json.Number(fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000)), Host: rec.Checkpoint.Origin,
			Source: "tidemark", SourceType: "tidemark:event", Event: rec}
	case ExportESBulk:
		action, err := json.Marshal(map[string]any{"index": map[string]string{"_id": rec.Checkpoint.Origin + "/" + strconv.FormatUint(rec.Index, 10)}})
		if err != nil {
			return nil, err
		}
		prefix = append(action, '\n')
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(append(prefix, b...), '\n'), nil
}

type hecEvent struct {
	Time       json.Number   `json:"time"`
	Host       string        `json:"host"`
	Source     string        `json:"source"`
	SourceType string        `json:"sourcetype"`
	Event      *ExportRecord `json:"event"`
}

// retryable is a failure worth sending the batch again for.
type retryable struct {
	err   error
	after time.Duration // what Retry-After asked, if anything
}

func (r *retryable) Error() string { return r.err.Error() }

// send posts one batch, retrying what can be retried.
func (e *Exporter) send(ctx context.Context, body []byte) error {
	wait := e.cfg.Backoff
	for attempt := 0; ; attempt++ {
		err := e.sendOnce(ctx, body)
		var r *retryable
		if err == nil || !errors.As(err, &r) {
			return err
		}
		if attempt >= e.cfg.Retries {
			return fmt.Errorf("%w (gave up after %d retries)", r.err, e.cfg.Retries)
		}
		d := wait
		if r.after > 0 {
			d = min(r.after, time.Minute)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (e *Exporter) sendOnce(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	switch e.cfg.Format {
	case ExportSplunkHEC:
		req.Header.Set("Content-Type", "application/json")
		if e.cfg.Token != "" {
			req.Header.Set("Authorization", "Splunk "+e.cfg.Token)
		}
	case ExportESBulk:
		req.Header.Set("Content-Type", "application/x-ndjson")
		if e.cfg.Token != "" {
			req.Header.Set("Authorization", "ApiKey "+e.cfg.Token)
		}
	default:
		req.Header.Set("Content-Type", "application/x-ndjson")
		if e.cfg.Token != "" {
			req.Header.Set("Authorization", "Bearer "+e.cfg.Token)
		}
	}
	resp, err := e.cfg.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return &retryable{err: fmt.Errorf("export: POST %s: %w", e.url.Redacted(), err)}
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return &retryable{err: fmt.Errorf("export: POST %s: reading the reply: %w", e.url.Redacted(), err)}
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &retryable{err: fmt.Errorf("export: POST %s: %s: %s", e.url.Redacted(), resp.Status, snippet(reply)), after: time.Duration(after) * time.Second}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = " (check --export-token: a HEC token for splunk-hec, an API key for es-bulk)"
		}
		return fmt.Errorf("export: POST %s: %s: %s%s", e.url.Redacted(), resp.Status, snippet(reply), hint)
	}
	switch e.cfg.Format {
	case ExportSplunkHEC:
		var r struct {
			Text string `json:"text"`
			Code *int   `json:"code"`
		}
		if err := json.Unmarshal(reply, &r); err != nil || r.Code == nil {
			return fmt.Errorf("export: POST %s: the reply is not a HEC reply: %s", e.url.Redacted(), snippet(reply))
		}
		if *r.Code != 0 {
			return fmt.Errorf("export: POST %s: HEC code %d: %s", e.url.Redacted(), *r.Code, r.Text)
		}
	case ExportESBulk:
		return bulkErrors(e.url, reply)
	}
	return nil
}

// bulkErrors reads a bulk API reply: nil if every item succeeded,
// retryable if the failed ones were all refused for load (429).
func bulkErrors(u *url.URL, reply []byte) error {
	var r struct {
		Errors *bool `json:"errors"`
		Items  []map[string]struct {
			Status int
			Error  json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(reply, &r); err != nil || r.Errors == nil {
		return fmt.Errorf("export: POST %s: the reply is not a bulk API reply: %s", u.Redacted(), snippet(reply))
	}
	if !*r.Errors {
		return nil
	}
	var first string
	failed, busy := 0, 0
	for _, item := range r.Items {
		for _, res := range item {
			if len(res.Error) == 0 || string(res.Error) == "null" {
				continue
			}
			failed++
			if res.Status == http.StatusTooManyRequests {
				busy++
			}
			if first == "" {
				first = fmt.Sprintf("status %d: %s", res.Status, snippet(res.Error))
			}
		}
	}
	err := fmt.Errorf("export: POST %s: %d of %d items failed, the first with %s", u.Redacted(), failed, len(r.Items), first)
	if failed > 0 && busy == failed {
		return &retryable{err: err}
	}
	return err
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
