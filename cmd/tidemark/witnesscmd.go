package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tidemark/tidemark/internal/pkcs11key"
	"github.com/tidemark/tidemark/witness"
)

func runWitness(args []string) error {
	fs := newFlags("witness", "--data DIR [flags]",
		"Runs a Tidemark witness: C2SP tlog-witness v1.0.0 on POST /add-checkpoint. It cosigns a log's checkpoint\n"+
			"only if it extends the last one it cosigned for that log, kept durably in DIR/witness.db, and it polls\n"+
			"the logs in --follow itself. SIGHUP reloads --logs, --follow and the TLS certificate.")
	data := fs.String("data", "", "data directory (witness.key, witness.db); created if missing")
	listen := fs.String("listen", "127.0.0.1:8081", "address of the witness API")
	adminListen := fs.String("admin-listen", "", "address of /metrics and /healthz (default: on --listen)")
	keyFile := fs.String("key", "", "witness secret key file (made by \"tidemark keygen --witness\"); default DATA/witness.key, created on first start. "+
		"Or a PKCS#11 URI (pkcs11:token=T;object=LABEL?module-path=/path/module.so&pin-source=file:/path, PIN also from $TIDEMARK_PKCS11_PIN) naming an Ed25519 key in an HSM, which needs --name, and --init on the first start (docs/keys.md)")
	name := fs.String("name", "", "name of the key created on first start (a schema-less URL naming this witness; default HOSTNAME/witness); once the key exists, only its own name is accepted")
	initState := fs.Bool("init", false, "start with a key but no state: only for a new witness whose key was made elsewhere, or knowingly after losing the state")
	logsFile := fs.String("logs", "", "logs that may push checkpoints, in the witness-network logs/v0 format (reloaded on SIGHUP)")
	followFile := fs.String("follow", "", "logs to poll, as \"log VKEY URL\" lines (reloaded on SIGHUP)")
	tlsFlags := addTLSServerFlags(fs, "")
	tlsCA := addTLSCAFlag(fs, "logs it follows (--follow)")
	pollInterval := fs.Duration("poll-interval", witness.DefaultPollInterval, "how often followed logs are polled")
	globalQPS := fs.Float64("max-qps", witness.DefaultGlobalQPS, "add-checkpoint requests a second that advance state, all logs together (past it: 429); negative for no limit")
	maxEvidence := fs.Int("max-evidence", witness.DefaultMaxEvidence, "items of evidence kept per log")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return usageError{"--data DIR is required (the witness's directory; created if missing)"}
	}
	if *logsFile == "" && *followFile == "" {
		return usageError{"give --logs FILE and/or --follow FILE: a witness with no logs cosigns nothing"}
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
	followCAs, err := loadTLSCA(*tlsCA)
	if err != nil {
		return err
	}

	// The listeners first: witness.New checks everything else before it
	// creates the key and the state, so a start that fails leaves nothing.
	lns, err := openListeners(*listen, *adminListen)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w, err := witness.New(context.Background(), witness.Config{
		Dir: *data, KeyFile: *keyFile, Name: *name, Init: *initState,
		LogsFile: *logsFile, FollowFile: *followFile,
		GlobalQPS: *globalQPS, PollInterval: *pollInterval, MaxEvidence: *maxEvidence, RootCAs: followCAs,
		Logger: logger, Registry: reg,
	})
	if err != nil {
		closeListeners(lns)
		return err
	}
	if w.Created() {
		fmt.Printf("created a witness key in %s\nverifier key: %s\n", filepath.Join(*data, witness.KeyFile), w.VKey())
	}
	if pkcs11key.IsURI(*keyFile) {
		fmt.Printf("witness key in a PKCS#11 token: %s\nverifier key: %s\n", pkcs11key.Redact(*keyFile), w.VKey())
	}

	endpoints := []endpoint{{witnessHTTPServer(*listen, w.Handler(*adminListen == "")), lns[0]}}
	if *adminListen != "" {
		endpoints = append(endpoints, endpoint{witnessHTTPServer(*adminListen, w.AdminHandler()), lns[1]})
	}
	for _, e := range endpoints {
		e.hs.TLSConfig = serverTLS.config()
	}
	// On SIGTERM: stop taking requests and let those in flight finish: each
	// is answered only after its write is durable, so none is lost either way.
	return serveUntilSignal(logger, endpoints, func() {
		if err := w.Reload(); err != nil {
			logger.Error("log lists not reloaded; the previous ones stay in force", "err", err)
		}
		serverTLS.reload()
	}, func(context.Context) error { return w.Close() }, func() {
		admin := ""
		if len(lns) > 1 {
			admin = lns[1].Addr().String()
		}
		logger.Info("witness running", "vkey", w.VKey(), "listen", lns[0].Addr().String(), "admin", admin, "data", *data)
	})
}

// witnessRequestTimeout bounds the handling of one request.
const witnessRequestTimeout = 30 * time.Second

// witnessHTTPServer bounds what one connection can take: requests are small
// (witness.MaxRequestSize) and quick, so the timeouts are short.
func witnessHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           witnessDeadline(h, witnessRequestTimeout),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      45 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
}

// witnessDeadline bounds each request at d. POST /add-checkpoint runs on the
// connection's goroutine with a context deadline: Add honours its context
// wherever it waits for others (its origin's lock, the queue to the writer;
// a write the writer has taken is always waited for, so that no answer
// leaves while it may still land), and the answer at the deadline is a 503
// with Retry-After. Every other request goes through http.TimeoutHandler,
// which answers 503 at d whatever the handler does, at the price of a new
// goroutine per request: on the add-checkpoint path that goroutine, and its
// stack grown anew by each request's signature checks, were about a tenth of
// the witness's CPU (issue 13).
func witnessDeadline(h http.Handler, d time.Duration) http.Handler {
	others := http.TimeoutHandler(h, d, "request took too long\n")
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
			others.ServeHTTP(rw, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(rw, r.WithContext(ctx))
	})
}
