package log

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/search"
	"github.com/tidemark/tidemark/internal/web"
	"github.com/transparency-dev/tessera"
)

// Config configures a log server. Zero values take the defaults below.
type Config struct {
	// Dir holds the tiles (Tessera's POSIX layout) and the server's state.
	// With MySQL it holds only what a frontend keeps for itself.
	Dir string
	// MySQL, when set, is the DSN of the MySQL-compatible database the
	// log runs on (Tessera's MySQL driver) instead of Dir's files; any
	// number of frontends may share it, and the idempotency index lives
	// there too. With S3 it is where entries are sequenced.
	MySQL string
	// S3, when set (with MySQL), keeps tiles and bundles in an
	// S3-compatible bucket (Tessera's AWS driver).
	S3 *S3Config
	// Keys sign checkpoints; all share one origin. The first is the
	// current key, the others are kept during a rotation.
	Keys Keys
	// Tokens authenticate writers; nil means open writes (source
	// "anonymous"), which the command allows on loopback only, unless
	// ClientCertWriters is set.
	Tokens *Tokens
	// ClientCertWriters makes a verified TLS client certificate
	// authenticate a write: the certificate's subject common name is the
	// source stamped into the leaves (a name a tokens file could hold:
	// letters, digits and -_.@/:, else 403), and a bearer token sent with
	// it is ignored. A write without one falls back to Tokens, and with no
	// Tokens is refused (401): writes are never open. The log reads only
	// http.Request.TLS.VerifiedChains, so the TLS server in front of
	// Handler must verify client certificates against the writers' CAs
	// (tls.Config.ClientAuth tls.VerifyClientCertIfGiven and ClientCAs);
	// reads stay open to clients without a certificate.
	ClientCertWriters bool
	// ReadTokens, if not nil, protect what the entries hold: the entry
	// bundles (but a commitment log's, which hold no event content),
	// receipts, openings, payloads and search.
	ReadTokens *Tokens
	// AdminTokens, if not nil, may erase entries (POST /v1/erase) of a
	// commitment log; a writer's or a reader's token is not an admin
	// token. Nil: nobody may erase (403).
	AdminTokens *Tokens

	// Leaves is the log's leaf mode, LeavesEvent (the default) or
	// LeavesCommitment (leafmode.go). It is recorded on the first start;
	// a start with the other mode is refused.
	Leaves string
	// Retention, in a commitment log, erases the entries whose received
	// time is older than it, in batched erasure leaves of source
	// "retention" (retention.go); 0 keeps everything.
	Retention time.Duration

	// NoSearch turns the search index off (GET /v1/search answers 503).
	NoSearch bool
	// SearchMapping adds JSON pointers to the fields search finds in
	// events (search.ParseMapping); nil: the built-in shapes only.
	SearchMapping *search.Mapping

	MaxBody     int64 // bytes per request body, after decompression (default 8 MiB)
	MaxInFlight int   // events in flight before 503 (default 100,000)
	// MaxEventsPerRequest bounds the events (lines, items, log records) of
	// one request, counted before anything is decoded: over it, 413
	// (default DefaultMaxEventsPerRequest, or MaxInFlight when smaller). It
	// must not exceed MaxInFlight.
	MaxEventsPerRequest int
	// MaxInFlightBytes bounds the request body bytes held by all requests
	// together: over it, 503 (default DefaultMaxInFlightBytes, or MaxBody
	// when larger). It must be at least MaxBody.
	MaxInFlightBytes int64

	BatchSize          uint          // most entries in one Tessera batch (default 4,096)
	BatchAge           time.Duration // Tessera's batch age: how long a partial batch waits (default 1 ms)
	Linger             time.Duration // how long a group of requests waits for more before going to Tessera (default 0)
	CheckpointInterval time.Duration // default 250 ms; 1 s on MySQL (and S3), the least Tessera's MySQL driver takes
	RepublishInterval  time.Duration // default 3 s
	// StrayTempAge is how old a stray temporary file of Tessera's must be
	// before it is removed (default 10 s; see strays.go).
	StrayTempAge time.Duration

	// Policy is the trust policy (checkpoint.ParsePolicy) and PolicyText
	// its text, served at /v1/policy. The log asks the policy's witnesses
	// to cosign each checkpoint, and a log key must be one of its log
	// lines. Nil: the log's own keys and "quorum none".
	Policy     *checkpoint.Policy
	PolicyText []byte
	// FailOpen publishes a checkpoint that missed the quorum (receipts
	// still wait for one that has it); by default such a checkpoint is not
	// published.
	FailOpen           bool
	WitnessTimeout     time.Duration // how long a checkpoint waits for the quorum (default 5 s)
	WitnessWaitTimeout time.Duration // how long ?wait=witnessed waits (default 10 s)
	// WitnessRootCAs are the CAs trusted for HTTPS witnesses (default:
	// the system's roots).
	WitnessRootCAs *x509.CertPool

	Logger   *slog.Logger
	Registry *prometheus.Registry // metrics go here (default: a new registry)

	// frontendLease, when set by a test, replaces frontendLease: how long
	// a frontend may be silent before others recover its claims.
	frontendLease time.Duration

	// wrapAdd, when set by a test, wraps Tessera's Add: faults injected
	// there are what a failing disk would do under the append queue.
	wrapAdd func(tessera.AddFn) tessera.AddFn
}

// Defaults of Config, in one place: setDefaults applies them and the
// command's flags show them.
const (
	DefaultMaxBody     = 8 << 20 // bytes
	DefaultMaxInFlight = 100_000 // events
	DefaultBatchSize   = 4096
	DefaultBatchAge    = time.Millisecond
	// DefaultCheckpointInterval bounds how long a receipt waits for Tessera
	// to publish a checkpoint covering its entry: with witnesses on a LAN,
	// POST ?wait=witnessed is answered within about half a second at 50 and
	// 1,000 events a second (bench/receipt.sh; issue 13), at four witness
	// requests a second per witness.
	DefaultCheckpointInterval = 250 * time.Millisecond
	// DefaultMySQLCheckpointInterval is the default on MySQL (and S3): the
	// least Tessera v1.0.4's MySQL driver accepts.
	DefaultMySQLCheckpointInterval = time.Second
	DefaultRepublishInterval       = 3 * time.Second
	DefaultWitnessTimeout          = 5 * time.Second
	DefaultWitnessWaitTimeout      = 10 * time.Second
	// DefaultMaxEventsPerRequest covers real senders: the kube-apiserver
	// batches up to 400 events, log shippers and OpenTelemetry Collectors
	// a few thousand (the Collector's batch processor sends 8,192 by
	// default), the NDJSON benchmark 1,000.
	DefaultMaxEventsPerRequest = 10_000
	// DefaultMaxInFlightBytes holds four bodies of the default MaxBody.
	DefaultMaxInFlightBytes = 32 << 20
)

func (c *Config) setDefaults() {
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxEventsPerRequest == 0 {
		c.MaxEventsPerRequest = min(DefaultMaxEventsPerRequest, c.MaxInFlight)
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = max(DefaultMaxInFlightBytes, c.MaxBody)
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchAge == 0 {
		c.BatchAge = DefaultBatchAge
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
		if c.MySQL != "" {
			c.CheckpointInterval = DefaultMySQLCheckpointInterval
		}
	}
	if c.RepublishInterval == 0 {
		c.RepublishInterval = DefaultRepublishInterval
	}
	if c.StrayTempAge == 0 {
		c.StrayTempAge = defaultStrayTempAge
	}
	if c.WitnessTimeout == 0 {
		c.WitnessTimeout = DefaultWitnessTimeout
	}
	if c.WitnessWaitTimeout == 0 {
		c.WitnessWaitTimeout = DefaultWitnessWaitTimeout
	}
	if c.Leaves == "" {
		c.Leaves = LeavesEvent
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Server is a running log. Create it with New, serve Handler (and
// AdminHandler), and Close it to stop.
type Server struct {
	cfg        Config
	log        *slog.Logger
	tokens     *Tokens
	readTokens *Tokens

	ctx      context.Context
	cancel   context.CancelFunc
	backend  *backend
	appender *tessera.Appender
	shutdown func(context.Context) error
	reader   tessera.LogReader

	queue *appendQueue
	// idempotency is the idempotency index. It is set once it is open and
	// rebuilt, and indexReady then; until then every write is refused
	// (acceptingWrites), and idempotency is read only after indexReady.
	idempotency *idempotencyIndex
	indexReady  atomic.Bool
	// indexWait, while the index is not ready, is the fault kind its
	// last opening met (indexFault, or faultOther); owned by the index's
	// goroutine (maintainIndex), read by requests and /readyz.
	indexWait atomic.Value // string

	inflight inflight
	bodies   bodyBudget
	gzips    *bundleGzips
	stamps   stamps
	metrics  *metrics
	closing  atomic.Bool
	done     chan struct{} // closed when maintainIndex has stopped

	strays     *strayFiles
	storageLog storageLogger
	reusedLog  rateLimited
	knownSize  atomic.Uint64 // an integrated tree size, for withinTree

	// search is the search index (nil when off); searchDone is closed
	// when its indexer has stopped.
	search     *search.Store
	searchDone chan struct{}
	searching  chan struct{} // a slot per search being answered
	status     *statusCache

	policy         *checkpoint.Policy
	policyText     []byte
	awaiter        *awaiter
	witnessMetrics *witnessMetrics
	// roundEnded is the witness observer's (nil without witnesses): it
	// wakes the awaiter when a witness round ends.
	roundEnded chan struct{}

	// afterAppend, when set by a test, runs after entries are appended and
	// before the idempotency index is written; an error stands in for the
	// process dying there.
	afterAppend func() error
	// afterErasureAppend, when set by a test, runs after an erasure leaf
	// is sequenced and before anything is deleted; an error stands in for
	// the process dying there.
	afterErasureAppend func() error

	// payloads is the payload store of a commitment log (nil in event
	// mode).
	payloads *payloadStore
	// erasureMetrics count erasures.
	erasureMetrics *erasureMetrics
	// appliedErasures holds the indexes of the erasure leaves this
	// process applied (uint64 → bool): the repair loop skips them.
	appliedErasures sync.Map
	// background is closed when the erasure and retention loops stop.
	background []chan struct{}
}

// New opens the log in cfg.Dir: it checks that the keys verify the
// checkpoint already there and that the policy names them, writes a key
// made by OpenKeys, starts Tessera's appender on the POSIX driver, and
// rebuilds the idempotency index from the newest leaves before it returns.
// Every check comes before anything is written, so a configuration it
// refuses leaves cfg.Dir as it was. The server takes writes once New
// returns.
//
// Except on a full disk: opening the index in WAL mode needs room for
// SQLite's shared-memory file. An existing log then starts all the same
// and serves every read, but refuses writes (503 with Retry-After) until
// the index opens: New leaves a goroutine trying every indexRetryEvery,
// and the log takes writes by itself once there is room. The same holds if
// the disk turns read-only between the checks and the index. A new log
// cannot start on a full disk (Tessera writes its first tree state and
// checkpoint in NewAppender), and no log can start on a read-only one
// (Tessera v1.0.4 panics when it cannot open its lock file for writing):
// New fails then, and says so. Any other failure to open the index (a
// damaged file, one the log may not write) fails New as well.
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg.setDefaults()
	if len(cfg.Keys.Signers) == 0 {
		return nil, errors.New("a log needs at least one signing key")
	}
	if err := cfg.checkBounds(); err != nil {
		return nil, err
	}
	if err := cfg.checkErasure(); err != nil {
		return nil, err
	}
	if cfg.MySQL == "" {
		if err := CheckExistingCheckpoint(cfg.Dir, cfg.Keys.VKeys); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		tokens:     cfg.Tokens,
		readTokens: cfg.ReadTokens,
		inflight:   inflight{max: cfg.MaxInFlight},
		bodies:     bodyBudget{max: cfg.MaxInFlightBytes},
		gzips:      newBundleGzips(cfg.Dir, cfg.Logger),
		done:       make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var err error
	if s.metrics, err = newMetrics(s, cfg.Registry); err != nil {
		return nil, err
	}
	if s.erasureMetrics, err = newErasureMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	witnesses, witnessClient, err := s.setupWitnessing()
	if err != nil {
		return nil, err
	}
	// Checked: now create.
	if err := cfg.Keys.Create(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, stateDir), 0o755); err != nil {
		return nil, fmt.Errorf("couldn't create the data directory: %w", err)
	}
	// Tessera would panic on a read-only data directory (its lock file).
	if err := checkDirWritable(cfg.Dir); err != nil {
		return nil, err
	}
	if s.backend, err = openBackend(s.ctx, cfg, witnessClient); err != nil {
		s.cancel()
		return nil, err
	}
	if s.backend.kind != "posix" {
		if s.backend.db != nil {
			if err := checkNoMigrationPending(s.ctx, s.backend.db); err != nil {
				s.cancel()
				s.backend.close()
				return nil, err
			}
		}
		if err := s.checkStoredCheckpoint(); err != nil {
			s.cancel()
			s.backend.close()
			return nil, err
		}
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(cfg.Keys.Signers[0], cfg.Keys.Signers[1:]...).
		WithBatching(cfg.BatchSize, cfg.BatchAge).
		WithCheckpointInterval(cfg.CheckpointInterval).
		WithCheckpointRepublishInterval(cfg.RepublishInterval)
	// No Tessera antispam: event leaves never repeat (each has its own
	// "received"), so it would only cost a hash and a cache update per
	// entry. Retries are deduplicated by key (idempotencyIndex); /add is at
	// least once.
	if witnesses != nil {
		opts = opts.WithWitnesses(*witnesses, &tessera.WitnessOptions{Timeout: cfg.WitnessTimeout, FailOpen: cfg.FailOpen})
	}
	if m, ok := s.backend.driver.(mysqlDriver); ok {
		s.appender, s.shutdown, s.reader, err = m.appenderWith(s.ctx, opts, witnessClient)
	} else {
		s.appender, s.shutdown, s.reader, err = tessera.NewAppender(s.ctx, s.backend.driver, opts)
	}
	if err != nil {
		s.cancel()
		s.backend.close()
		if s.backend.kind == "posix" && classifyStorageError(cfg.Dir, err) == faultFull {
			// Only a new log writes in NewAppender (its version file, its
			// first tree state and checkpoint): an existing one only reads.
			return nil, fmt.Errorf("the data directory's disk is full (%s): free space and start again (a new log writes its first tree state and checkpoint before it serves anything): %w", cfg.Dir, err)
		}
		if witnesses != nil {
			return nil, fmt.Errorf("couldn't start the Tessera appender (a new log publishes its first checkpoint at once, and with witnesses that needs the quorum: are they up?): %w", err)
		}
		return nil, fmt.Errorf("couldn't start the Tessera appender: %w", err)
	}
	s.awaiter = newAwaiter(s.reader.ReadCheckpoint, s.policy, awaitPeriod, s.log)
	s.awaiter.delay = s.witnessMetrics.witnessedDelay
	s.awaiter.roundEnded = s.roundEnded
	go s.awaiter.run(s.ctx)

	add := s.appender.Add
	if cfg.wrapAdd != nil {
		add = cfg.wrapAdd(add)
	}
	s.queue = newAppendQueue(add, func() error {
		// Behind acceptingWrites: whatever the path, no entry reaches
		// Tessera before the index that answers its retries is open.
		if !s.indexReady.Load() {
			return errIndexNotOpen
		}
		if s.backend.kind != "posix" {
			return nil
		}
		return checkWritable(cfg.Dir)
	}, cfg.Linger, 2*int(cfg.BatchSize))
	s.queue.size = s.integratedSize
	s.queue.integrated = s.awaiter.integrated
	go s.queue.run(s.ctx)

	if err := s.openPayloads(); err != nil {
		s.cancel()
		s.backend.close()
		return nil, err
	}

	if s.backend.kind == "posix" {
		// Stray temporary files of Tessera's from earlier failed writes:
		// swept now, and again after failed appends.
		s.strays = newStrayFiles(cfg.Dir, cfg.StrayTempAge, uint64(cfg.BatchSize), s.integratedSize, s.log, s.metrics.strayRemoved)
		go s.strays.run(s.ctx, s.strays.sweep(time.Now()))
	}

	if err := s.openIndex(time.Time{}); err != nil {
		kind := indexFault(cfg.Dir, err)
		if kind == "" || s.backend.kind != "posix" {
			s.cancel()
			s.backend.close()
			return nil, err
		}
		s.indexWaiting(kind, err)
	}
	go s.maintainIndex()
	s.openSearch()
	if err := s.startErasures(); err != nil {
		_ = s.Close(context.Background())
		return nil, err
	}
	s.status = newStatusCache(s, witnessClient)
	go s.status.sample(s.ctx)
	return s, nil
}

// checkStoredCheckpoint refuses keys that do not verify the checkpoint a
// database or bucket already holds.
func (s *Server) checkStoredCheckpoint() error {
	b, err := s.backend.checkpoint(s.ctx)
	if err != nil {
		return fmt.Errorf("couldn't read the stored checkpoint: %w", err)
	}
	if b == nil {
		return nil
	}
	if err := checkCheckpointKeys(b, s.cfg.Keys.VKeys); err != nil {
		return fmt.Errorf("none of the keys given verifies the checkpoint already stored (%w): is this the right key for this database?", err)
	}
	return nil
}

// indexFile is the idempotency index of a POSIX log, in stateDir.
const indexFile = "idempotency.db"

// indexRetryEvery is how often a log whose idempotency index could not be
// opened tries again.
const indexRetryEvery = time.Second

// openIndex opens the idempotency index, builds it from the whole log if
// it is new, and recovers the claims of frontends that died (on POSIX:
// every claim, all left by an earlier process), then sets s.idempotency and
// lets writes in. On failure it leaves nothing open, so that it can be
// called again. waitingSince, when not zero, is when the log began waiting
// for the index.
func (s *Server) openIndex(waitingSince time.Time) error {
	var d *idempotencyIndex
	var fresh bool
	var err error
	lease := cmp.Or(s.cfg.frontendLease, frontendLease)
	if s.backend.db != nil {
		d, fresh, err = openMySQLIndex(s.backend.db, s.log, s.integratedSize)
	} else {
		d, fresh, err = openSQLiteIndex(filepath.Join(s.cfg.Dir, stateDir, indexFile), s.log, s.integratedSize)
	}
	if err != nil {
		return err
	}
	d.lease = lease
	if s.backend.db == nil {
		lease = 0 // one process: whoever left claims is gone
	}
	start := time.Now()
	ls := s.leafSource()
	var scanned uint64
	if fresh || d.volatile {
		// A new index is built from the whole log; a POSIX log's from its
		// watermark, above which rows may be missing.
		var from uint64
		if !fresh {
			if from, err = d.store.watermark(s.ctx); err != nil {
				d.halt()
				_ = d.Close()
				return fmt.Errorf("couldn't read the idempotency watermark: %w", err)
			}
		}
		if scanned, err = d.Build(s.ctx, ls, from); err != nil {
			d.halt()
			_ = d.Close()
			return fmt.Errorf("couldn't build the idempotency index from the log: %w", err)
		}
	}
	completed, released, err := d.Recover(s.ctx, ls, lease)
	if err != nil {
		d.halt()
		_ = d.Close()
		return fmt.Errorf("couldn't recover the idempotency index from the log: %w", err)
	}
	s.idempotency = d
	s.indexReady.Store(true) // after s.idempotency: a request that sees it sees the index
	attrs := []any{"storage", s.backend.kind, "built_from_entries", scanned, "claims_completed_from_leaves", completed, "claims_released", released, "took", time.Since(start).Round(time.Millisecond)}
	if waitingSince.IsZero() {
		s.log.Info("idempotency index ready", attrs...)
	} else {
		s.log.Info("idempotency index ready at last; taking writes",
			append(attrs, "waited", time.Since(waitingSince).Round(time.Second))...)
	}
	return nil
}

// leafSource reads the log for the idempotency index's recovery.
func (s *Server) leafSource() leafSource {
	return leafSource{
		size: func(ctx context.Context) (uint64, error) { return s.integratedSize() },
		next: func(ctx context.Context) (uint64, error) {
			n, err := s.reader.NextIndex(ctx)
			if errors.Is(err, os.ErrNotExist) {
				return 0, nil
			}
			return n, err
		},
		// A commitment log's keys are in its payloads.
		bundle: s.openedBundle,
	}
}

// indexWaiting records why the idempotency index could not be opened (a
// fault kind, "" for anything else), and logs it when the reason changes:
// once when the log starts waiting, not once a second.
func (s *Server) indexWaiting(kind string, err error) {
	kind = cmp.Or(kind, faultOther)
	if prev, _ := s.indexWait.Load().(string); prev == kind {
		return
	}
	s.indexWait.Store(kind)
	path := filepath.Join(s.cfg.Dir, stateDir, indexFile)
	if kind == faultOther {
		s.log.Error("couldn't open the idempotency index: serving reads, refusing writes (503) until it opens; retrying every second",
			"err", err, "path", path)
		return
	}
	s.log.Error("the idempotency index cannot be opened: the log's disk is "+faultWords(kind)+"; serving reads, refusing writes (503) until it opens, by itself once the disk takes writes again; retrying every second",
		"err", err, "path", path)
}

// indexWaitKind says why the idempotency index is not open yet.
func (s *Server) indexWaitKind() string {
	kind, _ := s.indexWait.Load().(string)
	return cmp.Or(kind, faultOther)
}

// acceptingWrites refuses a write until the idempotency index is open and
// rebuilt: a retry of an entry above the index's watermark is recognised
// only once Build (or, on MySQL, Recover) has read that entry back, so a write taken earlier
// could log an event twice.
func (s *Server) acceptingWrites() error {
	if s.indexReady.Load() {
		return nil
	}
	return indexNotOpenError(s.indexWaitKind())
}

// maintainIndex opens the idempotency index if New could not, then keeps
// this frontend's heartbeat and recovers the claims of dead ones until the
// server stops.
func (s *Server) maintainIndex() {
	defer close(s.done)
	if !s.awaitIndex() {
		return
	}
	if s.idempotency.volatile {
		s.watermarkLoop()
		return
	}
	s.idempotency.watch(s.ctx, s.leafSource())
}

// awaitIndex tries to open the idempotency index every indexRetryEvery
// until it opens (true) or the server stops (false).
func (s *Server) awaitIndex() bool {
	if s.indexReady.Load() {
		return true
	}
	since := time.Now()
	t := time.NewTicker(indexRetryEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return false
		case <-t.C:
		}
		err := s.openIndex(since)
		if err == nil {
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		s.indexWaiting(indexFault(s.cfg.Dir, err), err)
	}
}

// checkBounds refuses bounds that would refuse a request forever: one
// that the per-request bounds let through must fit the shared ones alone.
func (c *Config) checkBounds() error {
	if c.MaxEventsPerRequest > c.MaxInFlight {
		return fmt.Errorf("the events per request (%d, --max-events) are more than the events in flight (%d, --max-inflight): such a request could never be admitted; lower --max-events or raise --max-inflight", c.MaxEventsPerRequest, c.MaxInFlight)
	}
	if c.MaxInFlightBytes < c.MaxBody {
		return fmt.Errorf("the body bytes in flight (%d, --max-inflight-bytes) are less than one body (%d, --max-body): a body that large could never be read; raise --max-inflight-bytes or lower --max-body", c.MaxInFlightBytes, c.MaxBody)
	}
	if c.MaxEventsPerRequest < 1 || c.MaxInFlight < 1 || c.MaxBody < 1 {
		return errors.New("--max-events, --max-inflight and --max-body must be positive")
	}
	return nil
}

// stateDir is where the server keeps its own state inside the data
// directory, beside Tessera's .state; neither is ever served.
const stateDir = ".tidemark"

// watermarkLoop saves a POSIX log's idempotency watermark every second.
func (s *Server) watermarkLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	failing := false // logged once when saving starts failing, and once when it works again
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			err := s.idempotency.SaveWatermark(s.integratedSize)
			switch {
			case err != nil && !failing:
				s.log.Warn("idempotency watermark not saved; retrying every second (retries are still answered; the next start scans the log above the last watermark saved)", "err", err)
			case err == nil && failing:
				s.log.Info("idempotency watermark saved again")
			}
			failing = err != nil
		}
	}
}

func (s *Server) integratedSize() (uint64, error) {
	n, err := s.reader.IntegratedSize(s.ctx)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return n, err
}

// Handler returns the public HTTP API, with the admin endpoints of
// AdminHandler too when withAdmin is set. Paths are not cleaned: a request
// for a non-canonical path is a 404, not a redirect.
func (s *Server) Handler(withAdmin bool) http.Handler {
	r := mux.NewRouter().SkipClean(true)
	if withAdmin {
		s.adminRoutes(r, false)
	}
	r.HandleFunc("/v1/events", s.handleEvents).Methods(http.MethodPost)
	r.HandleFunc("/v1/k8s/audit", s.handleK8sAudit).Methods(http.MethodPost)
	r.HandleFunc("/v1/logs", s.handleOTLPLogs).Methods(http.MethodPost)
	r.HandleFunc("/add", s.handleAdd).Methods(http.MethodPost)
	r.HandleFunc("/v1/erase", s.handleErase).Methods(http.MethodPost)
	// The public reads, which a page opened from anywhere may make (CORS).
	reads := []struct {
		path string
		h    http.HandlerFunc
	}{
		{"/v1/receipt/{index}", s.handleReceipt},
		{"/v1/policy", s.handlePolicy},
		{"/v1/search", s.handleSearch},
		{"/v1/payloads", s.handlePayloads},
		{"/v1/status", s.handleStatus},
		{"/checkpoint", s.handleCheckpoint},
		{"/tile/{rest:.+}", s.handleTile},
	}
	for _, rd := range reads {
		r.Handle(rd.path, corsRead(rd.h)).Methods(http.MethodGet, http.MethodHead)
		r.Handle(rd.path, corsRead(nil)).Methods(http.MethodOptions)
	}
	// The web page (internal/web).
	r.Handle("/", web.Handler()).Methods(http.MethodGet, http.MethodHead)
	r.PathPrefix("/ui/").Handler(web.Handler()).Methods(http.MethodGet, http.MethodHead)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "not_found", "no such endpoint: %s", r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusMethodNotAllowed, "method", "%s is not allowed on %s", r.Method, r.URL.Path))
	})
	return withRequestID(r)
}

// AdminHandler returns /metrics, /healthz, /readyz and /debug/pprof/, for
// an admin listener of their own.
func (s *Server) AdminHandler() http.Handler {
	r := mux.NewRouter()
	s.adminRoutes(r, true)
	return r
}

// adminRoutes adds /metrics and the probes, and Go's profiler when the
// routes are on an admin listener of their own.
func (s *Server) adminRoutes(r *mux.Router, withPprof bool) {
	if withPprof {
		r.HandleFunc("/debug/pprof/profile", pprof.Profile)
		r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index)
	}
	r.Handle("/metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	r.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	r.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.closing.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if _, err := s.reader.ReadCheckpoint(r.Context()); err != nil {
			http.Error(w, "no checkpoint published yet", http.StatusServiceUnavailable)
			return
		}
		// A full or read-only disk leaves the log ready: it still serves
		// every read, and writers get a 503 with Retry-After that says why.
		// Taking it out of a load balancer would add an outage of reads
		// (witnesses, auditors, receipts) to the one of writes, and a POSIX
		// log has no peer to send the writes to.
		if status := s.writeStatus(); status != "" {
			_, _ = w.Write([]byte("ok: serving reads; not taking writes: " + status + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
}

// fail answers an error, counts it, and logs the server's own failures.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, cause := writeError(w, err)
	s.metrics.rejected.WithLabelValues(cause).Inc()
	if status >= 500 && status != http.StatusServiceUnavailable {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "request_id", w.Header().Get(requestIDHeader), "err", err)
	}
}

// waitPublished waits until the published checkpoint covers the whole
// integrated tree. Tessera's shutdown waits only for the entries this
// process appended; entries a crashed predecessor integrated but never got
// into a checkpoint are covered here, so that a clean stop always leaves a
// checkpoint over everything any process ever answered.
func (s *Server) waitPublished(ctx context.Context) error {
	want, err := s.integratedSize()
	if err != nil {
		return fmt.Errorf("couldn't read the tree size: %w", err)
	}
	for {
		if b, err := s.reader.ReadCheckpoint(ctx); err == nil {
			// Our own file: its size is all that is needed here.
			if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
				if c, err := checkpoint.Parse(b[:i+1]); err == nil && c.Size >= want {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no checkpoint covering all %d entries was published before the shutdown deadline: %w", want, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops the log gracefully: every entry whose index was handed out is
// integrated and covered by a published checkpoint, and the idempotency
// watermark is saved. Stop the HTTP servers (http.Server.Shutdown, which
// waits for in-flight requests) before calling it.
func (s *Server) Close(ctx context.Context) error {
	s.closing.Store(true)
	var errs []error
	if s.backend.kind == "posix" && probeDisk(s.cfg.Dir) == faultReadOnly {
		// Nothing can be published: waiting for it would only run out the
		// deadline. Every answered entry is integrated already; the next
		// start on a writable disk publishes a checkpoint over them.
		errs = append(errs, errors.New("the log's disk is read-only: stopped without publishing a checkpoint over the newest entries (the next start does)"))
	} else if err := s.shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("couldn't shut Tessera down cleanly: %w", err))
	} else if err := s.waitPublished(ctx); err != nil {
		errs = append(errs, err)
	}
	s.cancel()
	<-s.done
	for _, done := range s.background {
		<-done
	}
	if err := s.closeSearch(); err != nil {
		errs = append(errs, fmt.Errorf("couldn't close the search index: %w", err))
	}
	if s.indexReady.Load() {
		if err := s.idempotency.SaveWatermark(func() (uint64, error) {
			n, err := s.reader.IntegratedSize(context.Background())
			if errors.Is(err, os.ErrNotExist) {
				return 0, nil
			}
			return n, err
		}); errors.Is(err, errFrozen) {
			s.log.Warn("the idempotency watermark stays below entries whose rows may be missing; the next start scans the log from there")
		} else if err != nil {
			errs = append(errs, err)
		}
		if err := s.idempotency.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.payloads != nil {
		if err := s.payloads.close(); err != nil {
			errs = append(errs, fmt.Errorf("couldn't close the payload store: %w", err))
		}
	}
	if err := s.backend.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
