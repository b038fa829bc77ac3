package log

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/checkpoint"
	"golang.org/x/mod/sumdb/note"
)

// Tessera v1.0.4 reports a witness's failure only to klog and OpenTelemetry,
// without the policy's name for the witness, and says nothing of its own
// when a checkpoint misses the quorum. A witnessObserver is the
// http.RoundTripper of the client Tessera uses for witness requests: it sees
// every POST to a witness's add-checkpoint URL and its answer, counts them by
// witness and outcome, logs failures with the reason, and follows each
// checkpoint's round of requests to tell when the quorum was not met.
//
// It also stands between a witness's 200 and Tessera: Tessera v1.0.4 keeps
// the first cosignature line that sumdb/note accepts and copies it verbatim
// into the published checkpoint, and note accepts base64 with non-zero
// padding bits, which Tidemark's own verifiers (and every strict verifier)
// refuse. One such witness would make every published checkpoint one that
// verifiers refuse: no receipt for anyone, even with the quorum honest. So a
// 200 reaches Tessera only as the one cosignature line that
// checkpoint.Cosignatures accepts for that witness's key over the
// checkpoint sent, in canonical base64; anything else is turned into a
// failure of that witness (outcome "invalid_cosignature").
type witnessObserver struct {
	next     http.RoundTripper
	names    map[string]string        // add-checkpoint URL: the witness's policy name
	keys     map[string]note.Verifier // witness policy name: its cosignature/v1 key
	policy   *checkpoint.Policy
	failOpen bool
	log      *slog.Logger

	requests       *prometheus.CounterVec
	seconds        *prometheus.HistogramVec
	quorumSeconds  prometheus.Histogram
	quorumFailures prometheus.Counter

	// breaker, when set (logs on MySQL), keeps witnesses that do not
	// answer out of Tessera's publishing (witnessbreaker.go).
	breaker *witnessBreaker
	ctx     context.Context // ends the breaker's probes
	// quorumLog bounds the warnings of missed quorums: with the breaker,
	// a quorum that is down fails at every batch.
	quorumLog rateLimited

	// roundEnded receives (without blocking: it holds one) when a round
	// ends, with the quorum met or not: Tessera is then about to publish
	// the checkpoint or give it up, and the awaiter reads it at once.
	roundEnded chan struct{}

	mu    sync.Mutex // guards round
	round *witnessRound
}

// A witnessRound is the requests Tessera makes to publish one checkpoint:
// one per witness, plus retries after a 409 with the witness's size.
type witnessRound struct {
	checkpoint []byte            // the signed checkpoint sent
	started    time.Time         // when its first request was sent
	final      map[string]string // witness name: its final outcome, or the reason it failed
	cosigned   map[string]bool
	failed     map[string]string // witness name: why it did not cosign
	closed     bool              // the quorum was met or every witness has answered
}

// Outcomes of a witness request, the "outcome" label of
// tidemark_log_witness_requests_total.
const (
	outcomeCosigned     = "cosigned"            // 200 with a cosignature
	outcomeSizeMismatch = "size_mismatch"       // 409 text/x.tlog.size: Tessera retries with the witness's size
	outcomeCanceled     = "canceled"            // the quorum was met without it, or the log is stopping
	outcomeTimeout      = "timeout"             // no answer within the witness timeout
	outcomeError        = "error"               // no HTTP answer (refused, reset, DNS, TLS)
	outcomeInvalid      = "invalid_cosignature" // 200 without a cosignature line that verifies
	outcomeSkipped      = "skipped_down"        // not sent: the witness did not answer before (witnessBreaker)
	// otherwise "http_<status>"
)

func newWitnessObserver(next http.RoundTripper, names map[string]string, p *checkpoint.Policy, failOpen bool, logger *slog.Logger, reg *prometheus.Registry) (*witnessObserver, error) {
	keys := make(map[string]note.Verifier, len(p.Witnesses))
	for _, w := range p.Witnesses {
		keys[w.Name] = w.Verifier
	}
	o := &witnessObserver{
		next: next, names: names, keys: keys, policy: p, failOpen: failOpen, log: logger,
		roundEnded: make(chan struct{}, 1),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_log_witness_requests_total",
			Help: "add-checkpoint requests to each witness of the policy, by outcome (cosigned, size_mismatch, canceled, timeout, error, invalid_cosignature, http_<status>, and skipped_down: not sent, the witness did not answer before; MySQL logs only).",
		}, []string{"witness", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tidemark_log_witness_request_seconds",
			Help:    "Time to a witness's answer to add-checkpoint, by witness.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"witness"}),
		quorumSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_log_witness_quorum_seconds",
			Help:    "Time from the first add-checkpoint request for a checkpoint to the cosignature that met the quorum.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		quorumFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_log_witness_quorum_failures_total",
			Help: "Checkpoints whose witnessing did not meet the policy's quorum: not published (fail-closed), or published without the quorum (fail-open).",
		}),
	}
	for _, name := range names {
		for _, oc := range []string{outcomeCosigned, outcomeError, outcomeTimeout, outcomeInvalid, outcomeSkipped} {
			o.requests.WithLabelValues(name, oc) // so that rates start from zero
		}
	}
	if err := registerAll(reg, o.requests, o.seconds, o.quorumSeconds, o.quorumFailures); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *witnessObserver) RoundTrip(req *http.Request) (*http.Response, error) {
	name, ok := o.names[req.URL.String()]
	if !ok || req.Method != http.MethodPost {
		return o.next.RoundTrip(req)
	}
	if req.Context().Err() != nil {
		// Sent after Tessera gave up on its round (the quorum was met
		// without it, or the log is stopping): it fails at once and is part
		// of no round. Counting it in one would open a round that never
		// gets an answer, and report a quorum that nothing missed.
		resp, err := o.next.RoundTrip(req)
		o.requests.WithLabelValues(name, outcomeCanceled).Inc()
		return resp, err
	}
	var signed, sent []byte
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		sent = body
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if i := bytes.Index(body, []byte("\n\n")); i >= 0 {
			signed = body[i+2:]
		}
	}
	r := o.roundFor(signed)
	if o.breaker != nil && o.breaker.isDown(req.URL.String()) {
		o.requests.WithLabelValues(name, outcomeSkipped).Inc()
		o.finish(r, name, outcomeSkipped, errWitnessDown.Error())
		return nil, errWitnessDown
	}
	start := time.Now()
	resp, err := o.next.RoundTrip(req)
	elapsed := time.Since(start)
	o.seconds.WithLabelValues(name).Observe(elapsed.Seconds())

	var outcome, reason string
	switch {
	case err != nil && errors.Is(req.Context().Err(), context.Canceled):
		outcome, reason = outcomeCanceled, "canceled: the quorum was met without it, or the log is stopping"
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(req.Context().Err(), context.DeadlineExceeded)):
		outcome, reason = outcomeTimeout, fmt.Sprintf("no answer within the witness timeout (%s)", elapsed.Round(time.Millisecond))
	case err != nil:
		outcome, reason = outcomeError, err.Error()
	case resp.StatusCode == http.StatusOK:
		outcome = outcomeCosigned
		if reason = o.checkCosignature(resp, name, signed); reason != "" {
			outcome = outcomeInvalid
		}
	case resp.StatusCode == http.StatusConflict && resp.Header.Get("Content-Type") == "text/x.tlog.size":
		outcome = outcomeSizeMismatch
		// Tessera reads the answer whole: a decimal size is a few bytes.
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxSizeAnswer+1))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if rerr != nil || len(b) > maxSizeAnswer {
			outcome = "http_409"
			reason = fmt.Sprintf("409 with a tree size answer over %d bytes", maxSizeAnswer)
			if rerr != nil {
				reason = fmt.Sprintf("409: couldn't read the tree size answer: %v", rerr)
			}
			b = []byte("tidemark: " + reason + "\n")
			resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway"
			resp.Body = io.NopCloser(bytes.NewReader(b))
		}
		resp.ContentLength = int64(len(b))
		resp.Header.Del("Content-Length")
	default:
		outcome = "http_" + strconv.Itoa(resp.StatusCode)
		// Read the answer to quote it, and hand Tessera the same bytes.
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		reason = fmt.Sprintf("%d %s: %s", resp.StatusCode, witnessStatusMeaning(resp.StatusCode), firstLine(b))
		if rerr != nil {
			reason += fmt.Sprintf(" (reading the answer: %v)", rerr)
		}
	}
	o.requests.WithLabelValues(name, outcome).Inc()
	if o.breaker != nil && (outcome == outcomeTimeout || outcome == outcomeError) && sent != nil {
		o.breaker.failed(o.ctx, name, req.URL.String(), sent, req.Header)
	}
	switch outcome {
	case outcomeCosigned, outcomeSizeMismatch, outcomeCanceled:
		o.log.Debug("witness answered", "witness", name, "outcome", outcome, "took", elapsed)
	default:
		o.log.Warn("witness did not cosign", "witness", name, "url", req.URL.String(), "outcome", outcome, "reason", reason, "took", elapsed.Round(time.Millisecond))
	}
	if outcome != outcomeSizeMismatch {
		o.finish(r, name, outcome, reason)
	}
	return resp, err
}

// maxSizeAnswer bounds the body of a witness's 409 text/x.tlog.size that is
// read: a decimal uint64 and a newline, with room for white space.
const maxSizeAnswer = 64

// maxCosignatureAnswer bounds the body of a witness's 200 that is read: a
// few cosignature lines.
const maxCosignatureAnswer = 16 << 10

// checkCosignature replaces the body of a witness's 200 with the one
// cosignature line by that witness's key that verifies over signed (the
// checkpoint sent), re-encoded in canonical base64. When there is none it
// makes the answer a 502, which Tessera counts as that witness failing, and
// returns why.
func (o *witnessObserver) checkCosignature(resp *http.Response, name string, signed []byte) (reason string) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCosignatureAnswer+1))
	resp.Body.Close()
	line, why := canonicalCosignature(b, signed, o.keys[name])
	switch {
	case err != nil:
		why = fmt.Sprintf("couldn't read the answer: %v", err)
	case len(b) > maxCosignatureAnswer:
		why = fmt.Sprintf("the answer is over %d bytes", maxCosignatureAnswer)
	}
	if why != "" {
		line = nil
		resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway"
		b = []byte("tidemark: the witness answered 200 without a valid cosignature: " + why + "\n")
	} else {
		b = line
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return why
}

// canonicalCosignature finds, among the lines of a witness's answer, the
// cosignature line by key over signed, and returns it in canonical form:
// "— <name> <canonical base64>\n". A line is taken only if the log's own
// strict parser (checkpoint.Cosignatures) accepts signed with it added.
func canonicalCosignature(answer, signed []byte, key note.Verifier) (line []byte, why string) {
	if key == nil {
		return nil, "the witness is not in the policy"
	}
	why = "no cosignature line by the witness's key " + checkpoint.KeyID(key)
	for _, l := range strings.Split(string(answer), "\n") {
		rest, ok := strings.CutPrefix(l, "— ")
		if !ok {
			continue
		}
		n, b64, ok := strings.Cut(rest, " ")
		if !ok || n != key.Name() {
			continue
		}
		// Decoded leniently, as note does: non-zero padding bits are the
		// defect this repairs; the signature bytes are what is checked.
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sig) < 4 || binary.BigEndian.Uint32(sig) != key.KeyHash() {
			continue
		}
		canon := []byte("— " + n + " " + base64.StdEncoding.EncodeToString(sig) + "\n")
		cos, err := checkpoint.Cosignatures(append(bytes.Clone(signed), canon...), key)
		if err != nil {
			why = fmt.Sprintf("the cosignature line by %s does not verify: %v", checkpoint.KeyID(key), err)
			continue
		}
		if _, ok := cos[checkpoint.KeyID(key)]; ok {
			return canon, ""
		}
	}
	return nil, why
}

// roundFor returns the round of the checkpoint being sent, starting a new
// one for a new checkpoint or for one whose previous round is over (Tessera
// republishes an unchanged tree, and tries again after a failed round).
func (o *witnessObserver) roundFor(signed []byte) *witnessRound {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.round != nil && !o.round.closed && bytes.Equal(o.round.checkpoint, signed) {
		return o.round
	}
	if o.round != nil && !o.round.closed {
		o.closeRound(o.round) // a round with answers missing: judge it on what it got
	}
	o.round = &witnessRound{checkpoint: bytes.Clone(signed), started: time.Now(), final: map[string]string{}, cosigned: map[string]bool{}, failed: map[string]string{}}
	return o.round
}

// finish records a witness's final outcome in its round, and closes the
// round when the quorum is met or every witness has answered.
func (o *witnessObserver) finish(r *witnessRound, name, outcome, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.closed {
		return
	}
	r.final[name] = outcome
	switch outcome {
	case outcomeCosigned:
		r.cosigned[name] = true
		if o.policy.Satisfied(r.cosigned) {
			r.closed = true
			o.quorumSeconds.Observe(time.Since(r.started).Seconds())
			o.ended()
			return
		}
	case outcomeCanceled:
	default:
		r.failed[name] = reason
	}
	if len(r.final) == len(o.names) {
		o.closeRound(r)
	}
}

// closeRound ends a round; one that missed the quorum is counted and logged
// with every witness's reason. The caller holds o.mu.
func (o *witnessObserver) closeRound(r *witnessRound) {
	r.closed = true
	o.ended()
	if o.policy.Satisfied(r.cosigned) {
		return
	}
	if len(r.failed) == 0 {
		// No witness failed: every answer missing or canceled. Tessera
		// stopped asking, because the quorum was met in a round that ended
		// before these requests were answered (a witness's retry after its
		// 409 races the quorum), or because the log is stopping. Not a
		// missed quorum: Tessera gives up on a checkpoint only after every
		// witness has answered or timed out, and those are failures.
		return
	}
	o.quorumFailures.Inc()
	size := "?"
	if c, err := checkpoint.Parse(checkpointBody(r.checkpoint)); err == nil {
		size = strconv.FormatUint(c.Size, 10)
	}
	var reasons []string
	for _, name := range slices.Sorted(maps.Keys(r.failed)) {
		reasons = append(reasons, name+": "+r.failed[name])
	}
	msg := "checkpoint NOT published: the witness quorum was not met; the log keeps taking entries and tries again next interval"
	if o.failOpen {
		msg = "checkpoint published WITHOUT the witness quorum (fail-open): receipts wait for a checkpoint that has it"
	}
	held, ok := o.quorumLog.allow(quorumLogEvery)
	if !ok {
		return
	}
	o.log.Warn(msg, "size", size, "quorum", o.policy.Quorum, "cosigned", slices.Sorted(maps.Keys(r.cosigned)), "failed", strings.Join(reasons, "; "), "not_logged_since", held)
}

// ended tells the awaiter that a round has ended.
func (o *witnessObserver) ended() {
	select {
	case o.roundEnded <- struct{}{}:
	default:
	}
}

// quorumLogEvery bounds how often a missed quorum is logged (each is
// counted in tidemark_log_witness_quorum_failures_total).
const quorumLogEvery = 10 * time.Second

// checkpointBody returns the text of a signed note, before its signatures.
func checkpointBody(signed []byte) []byte {
	if i := bytes.LastIndex(signed, []byte("\n\n")); i >= 0 {
		return signed[:i+1]
	}
	return signed
}

// witnessStatusMeaning explains a C2SP tlog-witness v1.0.0 status code.
func witnessStatusMeaning(code int) string {
	switch code {
	case http.StatusNotFound:
		return "the witness does not know this log's origin (add the log to its log list)"
	case http.StatusForbidden:
		return "no signature by a key the witness trusts for this log (give it the log's vkey)"
	case http.StatusBadRequest:
		return "the witness refused the request as malformed or with an old size beyond the checkpoint"
	case http.StatusConflict:
		return "the witness cosigned a different root hash at this size: the log and the witness disagree on history"
	case http.StatusUnprocessableEntity:
		return "the witness says the consistency proof does not verify"
	case http.StatusTooManyRequests:
		return "the witness is rate limiting this log"
	}
	return http.StatusText(code)
}

func firstLine(b []byte) string {
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}

// witnessMetrics are the metrics of witnessed checkpoints and receipts.
type witnessMetrics struct {
	receiptWait    prometheus.Histogram
	witnessedDelay prometheus.Histogram
}

func newWitnessMetrics(s *Server, reg *prometheus.Registry) (*witnessMetrics, error) {
	m := &witnessMetrics{
		receiptWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_log_receipt_wait_seconds",
			Help:    "Time a POST /v1/events?wait=witnessed waited, after its events were logged, for a witnessed checkpoint and its receipts.",
			Buckets: prometheus.ExponentialBuckets(0.01, 1.5, 16),
		}),
		witnessedDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_log_witnessed_delay_seconds",
			Help:    "Time from the integration of a group of entries appended by this frontend (one observation per group handed to Tessera) to the first published checkpoint cosigned by the quorum that covers them: the least a receipt waits.",
			Buckets: prometheus.ExponentialBuckets(0.01, 1.5, 16),
		}),
	}
	if err := registerAll(reg, m.receiptWait, m.witnessedDelay,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_witnessed_tree_size",
			Help: "Size of the latest published checkpoint that the policy accepts (cosigned by the quorum); receipts are made against it.",
		}, func() float64 {
			if wc, _ := s.awaiter.current(); wc != nil {
				return float64(wc.c.Size)
			}
			return -1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_witnessed_checkpoint_age_seconds",
			Help: "Time since the newest cosignature of the latest witnessed checkpoint (since it was seen, with quorum none).",
		}, func() float64 {
			wc, _ := s.awaiter.current()
			if wc == nil {
				return -1
			}
			t := wc.observedAt
			if len(wc.cosigners) > 0 {
				t = time.Time{}
				for _, ct := range wc.cosigners {
					if ct.After(t) {
						t = ct
					}
				}
			}
			return time.Since(t).Seconds()
		}),
	); err != nil {
		return nil, err
	}
	return m, nil
}
