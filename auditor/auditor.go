package auditor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// Defaults of Config.
const (
	DefaultMaxAge    = 5 * time.Minute
	DefaultClockSkew = time.Minute
	DefaultWorkers   = 16
)

// Config configures an Auditor. Only Policy is required.
type Config struct {
	// Policy is everything the auditor trusts: the log's keys and URL, the
	// witnesses (and their URLs, for gossip) and the quorum.
	Policy *checkpoint.Policy
	// LogURL overrides the URL of the policy's first log line that has one.
	LogURL string
	// StateDir keeps what the auditor has accepted (state.json), the
	// progress of a full check (full.json) and the evidence it wrote
	// (evidence/). Empty: nothing persists and evidence goes to EvidenceDir.
	StateDir string
	// EvidenceDir overrides StateDir/evidence.
	EvidenceDir string
	// HTTPClient fetches from the log and the witnesses (default: a client
	// with its own connection pool sized for Workers).
	HTTPClient *http.Client
	// RootCAs are the CAs trusted for an HTTPS log and witnesses when
	// HTTPClient is nil (default: the system's roots).
	RootCAs *x509.CertPool
	// ReadToken, if set, is sent as a bearer token for entry bundles and
	// for the contents of commitment leaves (GET /v1/payloads).
	ReadToken string
	// SkipPayloads checks a commitment-mode log's tree without fetching
	// its events: the commitment leaves are counted as Counts.Unchecked.
	SkipPayloads bool
	// Sink, if set, receives every verified event of a full check once
	// the tree it is in has been checked against the witnessed checkpoint
	// (see Sink).
	Sink Sink
	// Compression of entry bundles: "gzip", "identity", or "" for gzip
	// except on loopback, where identity is cheaper.
	Compression string
	// Rules are matched against event leaves: in a full check over every
	// leaf, in Check over the leaves new since the last accepted checkpoint.
	Rules []Rule
	// MaxAge is how old the newest quorum of cosignatures may be before the
	// log is stale; ClockSkew how far in the future a cosignature may be
	// dated and still count.
	MaxAge, ClockSkew time.Duration
	// Workers is how many entry bundles a full check fetches at once.
	Workers int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnFinding, if set, is called with every finding as it is made, from
	// the goroutine running the check. It must not block for long.
	OnFinding func(Finding)
	// OnProgress, if set, is called about every ProgressInterval during a
	// full check, from the goroutine running it.
	OnProgress       func(Progress)
	ProgressInterval time.Duration
	// Metrics, if set, is updated as checks run.
	Metrics *Metrics
	// OnLeaf, if set, is called with every leaf a check reads from the
	// log's entry bundles (a full check: every leaf it checks in this run),
	// with its index. It is called from the goroutines fetching bundles,
	// concurrently and in no particular order, before the bundle's hashes
	// are checked against the tiles: what it is given is verified only if
	// the check ends with FullResult.Verified. leaf is valid only during
	// the call.
	OnLeaf func(index uint64, leaf []byte)
	// OnOpened, if set, is called like OnLeaf with the event leaf a
	// commitment leaf's opening holds, once the opening verified against
	// the commitment (content checks: not with SkipPayloads).
	OnOpened func(index uint64, eventLeaf []byte)
	// Rescan makes Full check every leaf from index 0, with progress of its
	// own that it does not save, so that OnLeaf sees the whole log; the
	// progress an earlier run saved in StateDir is neither used nor changed
	// (the accepted checkpoint still is). Not with a Sink.
	Rescan bool
}

// An Auditor checks one log against a policy. Its methods must not be called
// concurrently: one goroutine runs the checks, and owns the state.
type Auditor struct {
	cfg    Config
	policy *checkpoint.Policy
	origin string
	log    *fetcher
	state  *stateStore

	// seen holds the keys of findings already passed to OnFinding, so
	// that following a misbehaving log alerts once per problem, not once
	// per poll. Bounded by maxSeen.
	seen map[string]bool
}

// New returns an Auditor for cfg, with its state loaded from cfg.StateDir.
// It does no network I/O.
func New(cfg Config) (*Auditor, error) {
	if cfg.Policy == nil {
		return nil, errors.New("auditor: a policy is required")
	}
	if cfg.Rescan && cfg.Sink != nil {
		return nil, errors.New("auditor: Rescan and a Sink do not go together: a rescan keeps no progress, and the Sink's spool is part of it")
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = time.Second
	}
	logURL := cfg.LogURL
	if logURL == "" {
		for _, l := range cfg.Policy.Logs {
			if l.URL != "" {
				logURL = l.URL
				break
			}
		}
	}
	if logURL == "" {
		return nil, errors.New("auditor: the policy's log line has no URL: add one (\"log VKEY URL\")")
	}
	u, err := url.Parse(strings.TrimSuffix(logURL, "/") + "/")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("auditor: bad log URL %q", logURL)
	}
	if cfg.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.Workers + 4
		t.DisableCompression = true // we ask for gzip ourselves, for bundles only
		if cfg.RootCAs != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		}
		cfg.HTTPClient = &http.Client{Transport: t, Timeout: 2 * time.Minute}
	}
	gz := cfg.Compression == "gzip" || cfg.Compression == "" && !isLoopback(u.Hostname())
	switch cfg.Compression {
	case "", "gzip", "identity":
	default:
		return nil, fmt.Errorf("auditor: compression %q: want gzip, identity or empty", cfg.Compression)
	}
	st, err := openState(cfg.StateDir, cfg.Policy.Origin())
	if err != nil {
		return nil, err
	}
	if cfg.EvidenceDir == "" && cfg.StateDir != "" {
		cfg.EvidenceDir = cfg.StateDir + "/evidence"
	}
	return &Auditor{
		cfg:    cfg,
		policy: cfg.Policy,
		origin: cfg.Policy.Origin(),
		log:    &fetcher{base: u, hc: cfg.HTTPClient, token: cfg.ReadToken, gzip: gz},
		state:  st,
		seen:   map[string]bool{},
	}, nil
}

// Accepted returns the last checkpoint the auditor accepted, verbatim (a
// signed note with its cosignatures), or nil if none: before a check, the
// one an earlier run accepted, kept in StateDir.
func (a *Auditor) Accepted() []byte {
	if a.state.follow.Accepted == "" {
		return nil
	}
	return []byte(a.state.follow.Accepted)
}

// Close releases the state directory's lock.
func (a *Auditor) Close() error { return a.state.close() }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// A Kind names what a finding is about.
type Kind string

// Kinds of finding. The first group is misbehaviour (exit status 1), the
// second means something could not be checked (2), the third is neither.
const (
	KindSplitView    Kind = "split-view"      // two log-signed checkpoints that cannot both be true (evidence written)
	KindRollback     Kind = "rollback"        // the log serves a smaller tree than one already accepted
	KindBadSignature Kind = "bad-signature"   // a checkpoint not validly signed by the log, or an invalid cosignature
	KindQuorum       Kind = "quorum"          // the log's checkpoint lacks a quorum of cosignatures
	KindStale        Kind = "stale"           // the newest quorum of cosignatures is older than MaxAge
	KindBadTiles     Kind = "bad-tiles"       // tiles that contradict the entries or the log's own checkpoint
	KindRootMismatch Kind = "root-mismatch"   // the entries do not hash to the checkpoint's root
	KindBadLeaf      Kind = "bad-leaf"        // a leaf that claims to be one the log writes but is not canonical, or an erasure of the future
	KindBadOpening   Kind = "bad-opening"     // content served for a commitment leaf that does not open it: the payload store was changed
	KindMissing      Kind = "missing-payload" // a commitment leaf without content and without an erasure leaf covering it
	KindErasedServed Kind = "erased-served"   // content still served for an index an erasure leaf erased

	KindUnavailable Kind = "unavailable" // the log could not be read or served something unparseable

	KindRule    Kind = "rule"    // an event matched a rule
	KindWitness Kind = "witness" // a witness could not be asked or answered oddly (gossip incomplete)
	KindClock   Kind = "clock"   // a cosignature dated further in the future than ClockSkew
)

// Misbehaviour reports whether findings of kind k show the log misbehaving.
func (k Kind) Misbehaviour() bool {
	switch k {
	case KindSplitView, KindRollback, KindBadSignature, KindQuorum, KindStale, KindBadTiles, KindRootMismatch, KindBadLeaf,
		KindBadOpening, KindMissing, KindErasedServed:
		return true
	}
	return false
}

// Severity of a finding, for alerts.
func (k Kind) Severity() string {
	switch {
	case k.Misbehaviour():
		return "critical"
	case k == KindUnavailable || k == KindRule:
		return "warning"
	}
	return "info"
}

// A Finding is something a check found.
type Finding struct {
	Kind    Kind      `json:"kind"`
	Origin  string    `json:"origin"`
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	// Evidence is the path of the evidence file written for a split view.
	Evidence string `json:"evidence,omitempty"`
	// Details are kind-specific: sizes, roots, the signed checkpoints, the
	// rule's name and the leaf's index.
	Details map[string]any `json:"details,omitempty"`
	// key identifies the finding for deduplication across Follow rounds.
	key string
}

// Exit statuses of a Report, for scripts and CI jobs.
const (
	ExitVerified     = 0
	ExitMisbehaviour = 1
	ExitUnchecked    = 2
)

// A Report is the outcome of one check.
type Report struct {
	Origin string
	// Checkpoint is the log's checkpoint the check was about (zero if none
	// could be read), and Witnessed whether it met the quorum.
	Checkpoint checkpoint.Checkpoint
	Witnessed  bool
	// Fresh is the time of the newest quorum of cosignatures.
	Fresh    time.Time
	Findings []Finding
	// Full is set by Full.
	Full *FullResult
}

// ExitCode is 1 if any finding shows misbehaviour, else 2 if anything
// could not be checked, else 0. Rule matches do not change it: they are
// about the events, not the log.
func (r *Report) ExitCode() int {
	code := ExitVerified
	for _, f := range r.Findings {
		if f.Kind.Misbehaviour() {
			return ExitMisbehaviour
		}
		if f.Kind == KindUnavailable {
			code = ExitUnchecked
		}
	}
	return code
}

// add records a finding and passes it on.
func (a *Auditor) add(r *Report, f Finding) {
	f.Origin = a.origin
	if f.Time.IsZero() {
		f.Time = a.cfg.Now().UTC()
	}
	r.Findings = append(r.Findings, f)
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.findings.WithLabelValues(string(f.Kind)).Inc()
	}
	if f.key != "" {
		if a.seen[f.key] {
			return
		}
		if len(a.seen) >= maxSeen {
			clear(a.seen)
		}
		a.seen[f.key] = true
	}
	if a.cfg.OnFinding != nil {
		a.cfg.OnFinding(f)
	}
}

// maxSeen bounds the memory of findings already reported.
const maxSeen = 10000

func (a *Auditor) addf(r *Report, k Kind, key string, details map[string]any, format string, args ...any) {
	a.add(r, Finding{Kind: k, key: key, Details: details, Message: fmt.Sprintf(format, args...)})
}

// unavailable records that something could not be read.
func (a *Auditor) unavailable(r *Report, what string, err error) {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		a.addf(r, KindUnavailable, "unavailable:"+what, nil, "couldn't %s: %v (the server's certificate is from a CA this auditor does not trust: add the CA with Config.RootCAs, `tidemark audit --tls-ca FILE`)", what, err)
		return
	}
	a.addf(r, KindUnavailable, "unavailable:"+what, nil, "couldn't %s: %v", what, err)
}

// ctxErr is the error to return from a check: only cancellation aborts one;
// everything else is a finding.
func ctxErr(ctx context.Context) error { return context.Cause(ctx) }
