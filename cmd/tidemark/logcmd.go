package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tidemark/tidemark/internal/pkcs11key"
	"github.com/tidemark/tidemark/internal/search"
	tlog "github.com/tidemark/tidemark/log"
	"k8s.io/klog/v2"
)

func runLog(args []string) error {
	fs := newFlags("log", "--data DIR [flags]",
		"Runs a Tidemark log: audit events in over HTTP, a Tessera tiled Merkle tree on disk (POSIX),\n"+
			"served as C2SP tlog-tiles with a signed checkpoint four times a second.")
	data := fs.String("data", "", "data directory (tiles, checkpoint, state); created if missing")
	listen := fs.String("listen", "127.0.0.1:8080", "address of the public API")
	adminListen := fs.String("admin-listen", "", "address of /metrics, /healthz and /readyz (default: on --listen)")
	var keys stringList
	fs.Var(&keys, "key", "signer key file (repeatable, same origin: the first signs as the current key, all sign during a rotation); default DATA/log.key, created on first start. "+
		"Or a PKCS#11 URI (pkcs11:token=T;object=LABEL?module-path=/path/module.so&pin-source=file:/path, PIN also from $TIDEMARK_PKCS11_PIN) naming an Ed25519 key in an HSM, which needs --origin (docs/keys.md)")
	origin := fs.String("origin", "", "origin for the key created on first start (a schema-less URL prefix naming this log; default HOSTNAME/tidemark); once the key exists, only its own origin is accepted")
	tokensFile := fs.String("tokens", "", "tokens file for writers (lines NAME sha256:HEX; reloaded on SIGHUP); without it (and without --tls-client-ca) writes are open, on loopback only")
	readTokensFile := fs.String("read-tokens", "", "tokens file protecting what the entries hold: entry bundles, receipts and search (checkpoint and hash tiles stay public)")
	adminTokensFile := fs.String("admin-tokens", "", "tokens file (the format of --tokens) of the admins who may erase entries of a commitment log (POST /v1/erase, `tidemark erase`); a writer's or reader's token is not an admin token; reloaded on SIGHUP")
	leaves := fs.String("leaves", tlog.LeavesEvent, "what each leaf holds: event (the event itself) or commitment (a salted hash of it; events and salts in a payload store, erasable with POST /v1/erase and --retention; docs/erasure.md). Chosen when the log is created: a restart with the other mode is refused")
	retention := fs.Duration("retention", 0, "with --leaves commitment: erase events received longer ago than this (e.g. 8760h), in logged, batched erasures; 0 keeps every event")
	searchOn := fs.Bool("search", true, "keep the search index (GET /v1/search), built from the log beside ingest: SQLite in --data, or tables in --mysql")
	searchMapping := fs.String("search-mapping", "", "file of JSON pointers telling search where actor, action, resource and outcome are in events of other shapes (lines FIELD /json/pointer)")
	insecureOpen := fs.Bool("insecure-open-writes", false, "allow writes without tokens on a non-loopback address")
	tlsFlags := addTLSServerFlags(fs, "PEM file of the CAs whose client certificates authenticate writers: the certificate's subject common name is the source stamped into leaves; reads need no certificate; needs --tls-cert; reloaded on SIGHUP")
	tlsCA := addTLSCAFlag(fs, "witnesses")
	maxBody := fs.Int64("max-body", tlog.DefaultMaxBody, "largest request body in bytes, after decompression")
	maxInFlight := fs.Int("max-inflight", tlog.DefaultMaxInFlight, "events in flight beyond which writes get 503 with Retry-After (every 8 values of an OTLP request weigh as one more event); one writer may hold at most half")
	maxEvents := fs.Int("max-events", tlog.DefaultMaxEventsPerRequest, "most events (NDJSON lines, array items, EventList items, OTLP log records) in one request, counted before decoding; more get 413 (split the batch); at most --max-inflight")
	maxInFlightBytes := fs.Int64("max-inflight-bytes", tlog.DefaultMaxInFlightBytes, "request body bytes held by all requests together (buffers grow as bytes arrive) beyond which writes get 503 with Retry-After; one writer may hold at most half; at least --max-body")
	batchSize := fs.Uint("batch-size", tlog.DefaultBatchSize, "most entries Tessera sequences in one batch")
	batchAge := fs.Duration("batch-age", tlog.DefaultBatchAge, "longest a partial Tessera batch waits before it is sequenced")
	linger := fs.Duration("linger", 0, "how long a group of requests waits for more before going to Tessera (one group is sequenced at a time; the next gathers meanwhile)")
	cpIntervalSet := false
	cpInterval := fs.Duration("checkpoint-interval", tlog.DefaultCheckpointInterval, fmt.Sprintf("how often a new checkpoint is published when the tree grows: receipts (wait=witnessed) wait for it, and each witness is asked once per checkpoint (check their qpd); with --mysql the default is %s, the least Tessera's MySQL driver takes", tlog.DefaultMySQLCheckpointInterval))
	republish := fs.Duration("republish-interval", tlog.DefaultRepublishInterval, "how often an unchanged checkpoint is signed again, so freshness shows")
	policyFile := fs.String("policy", "", "trust policy (log keys, witnesses, quorum; C2SP tlog-policy grammar): the witnesses to ask for cosignatures, served at /v1/policy; without it, the log's own keys and no witness")
	witnessTimeout := fs.Duration("witness-timeout", tlog.DefaultWitnessTimeout, "how long a new checkpoint waits for the witness quorum")
	failOpen := fs.Bool("witness-fail-open", false, "publish a checkpoint that missed the witness quorum (default: fail-closed, not published until the quorum is met; receipts wait for the quorum either way)")
	witnessWait := fs.Duration("witness-wait-timeout", tlog.DefaultWitnessWaitTimeout, "how long POST /v1/events?wait=witnessed waits for a witnessed checkpoint before answering 504 (the events stay logged)")
	mysqlDSN := fs.String("mysql", "", "run on this MySQL-compatible database instead of --data's files (DSN user:password@tcp(host:3306)/database; the tables are created on first start): any number of frontends with the same --key may share it; --data then keeps only the frontend's own files")
	s3Bucket := fs.String("s3-bucket", "", "keep tiles and entry bundles in this S3 bucket (with --mysql, which sequences); credentials from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or the shared config)")
	s3Endpoint := fs.String("s3-endpoint", "", "URL of an S3-compatible server other than AWS (path-style addressing)")
	s3Prefix := fs.String("s3-prefix", "", "prefix of the log's objects in the bucket, to keep several logs in one")
	s3Region := fs.String("s3-region", "", "the bucket's region (default from the AWS environment, else us-east-1)")
	s3Retention := fs.Duration("s3-retention", 0, "write tiles and entry bundles under S3 Object Lock (compliance mode) for this long, e.g. 8760h: nobody, the operator included, can delete or overwrite them before then; the bucket must have Object Lock enabled")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "checkpoint-interval" {
			cpIntervalSet = true
		}
	})
	if !cpIntervalSet {
		*cpInterval = 0 // the backend's default (tlog.Config)
	}
	if *data == "" {
		return usageError{"--data DIR is required (the log's directory; created if missing)"}
	}
	var s3 *tlog.S3Config
	if *s3Bucket != "" {
		if *mysqlDSN == "" {
			return usageError{"--s3-bucket needs --mysql DSN: entries are sequenced in MySQL, tiles go to the bucket"}
		}
		s3 = &tlog.S3Config{Bucket: *s3Bucket, Endpoint: *s3Endpoint, Prefix: *s3Prefix, Region: *s3Region, Retention: *s3Retention}
	} else if *s3Endpoint != "" || *s3Prefix != "" || *s3Retention != 0 {
		return usageError{"--s3-endpoint, --s3-prefix and --s3-retention need --s3-bucket"}
	}
	logger, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		return usageError{err.Error()}
	}
	slog.SetDefault(logger)
	serverTLS, err := tlsFlags.load(logger)
	if err != nil {
		return err
	}
	witnessCAs, err := loadTLSCA(*tlsCA)
	if err != nil {
		return err
	}
	clientCertWriters := serverTLS != nil && serverTLS.clientCAFile != ""
	if os.Getenv("GOGC") == "" {
		// The live heap is small and the allocation rate high (every
		// event is parsed and re-encoded): collect less often.
		debug.SetGCPercent(400)
	}
	klog.SetSlogLogger(logger.With("component", "tessera"))

	// Check everything, then open the listeners, and only then create the
	// key and the state: a start that fails leaves nothing behind.
	policy, policyText, err := loadPolicy(*policyFile)
	if err != nil {
		return err
	}
	var tokens, readTokens *tlog.Tokens
	if *tokensFile != "" {
		if tokens, err = tlog.LoadTokens(*tokensFile); err != nil {
			return err
		}
	}
	if clientCertWriters {
		logger.Info("writers authenticate with TLS client certificates from --tls-client-ca (the subject's common name is the source)", "tokens_too", tokens != nil)
		if *insecureOpen {
			logger.Warn("--insecure-open-writes has no effect with --tls-client-ca: a write needs a client certificate or a token")
		}
	} else if tokens == nil && !isLoopback(*listen) && !*insecureOpen {
		return usageError{fmt.Sprintf("--listen %s is not a loopback address and there is no --tokens file: anyone could write to this log. Give --tokens FILE (see `tidemark token`), or --tls-client-ca FILE (with --tls-cert and --tls-key) for writers with client certificates, or --insecure-open-writes if you mean it", *listen)}
	}
	var mapping *search.Mapping
	if *searchMapping != "" {
		b, err := os.ReadFile(*searchMapping)
		if err != nil {
			return err
		}
		if mapping, err = search.ParseMapping(b); err != nil {
			return fmt.Errorf("--search-mapping %s: %w", *searchMapping, err)
		}
	}
	if *readTokensFile != "" {
		if readTokens, err = tlog.LoadTokens(*readTokensFile); err != nil {
			return err
		}
	}
	var adminTokens *tlog.Tokens
	if *adminTokensFile != "" {
		if adminTokens, err = tlog.LoadTokens(*adminTokensFile); err != nil {
			return err
		}
	}
	if *leaves != tlog.LeavesEvent && *leaves != tlog.LeavesCommitment {
		return usageError{fmt.Sprintf("--leaves %q: use %s or %s", *leaves, tlog.LeavesEvent, tlog.LeavesCommitment)}
	}
	if *retention != 0 && *leaves != tlog.LeavesCommitment {
		return usageError{"--retention needs --leaves commitment: a log of event leaves keeps every event for life"}
	}
	k, err := tlog.OpenKeys(*data, keys, *origin)
	if err != nil {
		return err
	}
	lns, err := openListeners(*listen, *adminListen)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := tlog.ExportOpenTelemetry(reg); err != nil {
		closeListeners(lns)
		return err
	}
	ctx := context.Background()
	srv, err := tlog.New(ctx, tlog.Config{
		Dir: *data, MySQL: *mysqlDSN, S3: s3, Keys: k, Tokens: tokens, ReadTokens: readTokens,
		AdminTokens: adminTokens, Leaves: *leaves, Retention: *retention,
		NoSearch: !*searchOn, SearchMapping: mapping,
		ClientCertWriters: clientCertWriters, WitnessRootCAs: witnessCAs,
		MaxBody: *maxBody, MaxInFlight: *maxInFlight, MaxEventsPerRequest: *maxEvents, MaxInFlightBytes: *maxInFlightBytes,
		BatchSize: *batchSize, BatchAge: *batchAge, Linger: *linger,
		CheckpointInterval: *cpInterval, RepublishInterval: *republish,
		Policy: policy, PolicyText: policyText,
		WitnessTimeout: *witnessTimeout, FailOpen: *failOpen, WitnessWaitTimeout: *witnessWait,
		Logger: logger, Registry: reg,
	})
	if err != nil {
		closeListeners(lns)
		return err
	}
	if k.IsNew() {
		fmt.Printf("created a log key in %s for origin %q\nverifier key: %s\n", filepath.Join(*data, tlog.KeyFile), k.Signers[0].Name(), k.VKeys[0])
	}
	for i, f := range keys {
		if pkcs11key.IsURI(f) {
			fmt.Printf("log key in a PKCS#11 token: %s\nverifier key: %s\n", pkcs11key.Redact(f), k.VKeys[i])
		}
	}
	if tokens == nil && !clientCertWriters {
		logger.Warn("WRITES ARE OPEN: there is no --tokens file, so anyone who can reach this address can append (source \"anonymous\")", "listen", lns[0].Addr().String())
	}

	endpoints := []endpoint{{newHTTPServer(*listen, srv.Handler(*adminListen == ""), *witnessWait), lns[0]}}
	if *adminListen != "" {
		endpoints = append(endpoints, endpoint{newHTTPServer(*adminListen, srv.AdminHandler(), *witnessWait), lns[1]})
	}
	for _, e := range endpoints {
		e.hs.TLSConfig = serverTLS.config()
	}
	// On SIGTERM: stop taking requests and wait for those in flight (their
	// entries are integrated once answered), then let Tessera publish a
	// checkpoint covering everything.
	return serveUntilSignal(logger, endpoints, func() {
		for _, t := range []*tlog.Tokens{tokens, readTokens, adminTokens} {
			if t == nil {
				continue
			}
			if err := t.Reload(); err != nil {
				logger.Error("tokens not reloaded; the previous ones stay in force", "err", err)
			} else {
				logger.Info("tokens reloaded")
			}
		}
		serverTLS.reload()
	}, srv.Close, func() {
		admin := ""
		if len(lns) > 1 {
			admin = lns[1].Addr().String()
		}
		logger.Info("log running", "origin", k.Signers[0].Name(), "vkey", k.VKeys[0], "listen", lns[0].Addr().String(), "admin", admin, "data", *data)
	})
}

// readTimeout bounds reading a whole request, body included.
const readTimeout = 2 * time.Minute

// newHTTPServer is the log's HTTP server. Its WriteTimeout, which runs from
// the end of a request's headers to the end of its answer, is longer than
// the longest legitimate answer: the whole body read (readTimeout), a
// ?wait=witnessed wait (witnessWait), and answerMargin to append the events
// and write the answer. A client that stops reading its answer holds a
// connection no longer than that.
func newHTTPServer(addr string, h http.Handler, witnessWait time.Duration) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       readTimeout,
		WriteTimeout:      logWriteTimeout(witnessWait),
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// answerMargin is the time an answer gets besides reading the request and
// waiting for witnesses: appending under load, writing a 16 MiB bundle.
const answerMargin = 30 * time.Second

func logWriteTimeout(witnessWait time.Duration) time.Duration {
	return readTimeout + witnessWait + answerMargin
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newLogger(format, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}
