package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tidemark/tidemark/auditor"
	"github.com/tidemark/tidemark/checkpoint"
)

func runAudit(args []string) error {
	fs := newFlags("audit", "--policy FILE [flags]",
		"Verifies a Tidemark log it does not control, trusting only the policy file: the log's signature, the\n"+
			"witness quorum, freshness, consistency with what it accepted before (--state), and each witness's view\n"+
			"(gossip). --full also downloads every entry and recomputes the tree, and in a commitment-mode log\n"+
			"holds every event the log serves to its commitment. --export DEST (implies --full) streams the verified\n"+
			"events, each with the witnessed checkpoint it was checked against, once the root matched. Exit status:\n"+
			"0 verified, 1 misbehaviour found, 2 could not check. With --follow it keeps checking every --interval.")
	policyFile := fs.String("policy", "", "trust policy (log key and URL, witnesses and URLs, quorum)")
	logURL := fs.String("log-url", "", "the log's URL (default: the policy's log line)")
	stateDir := fs.String("state", "", "state directory: the last accepted checkpoint, full-check progress, evidence (default: none, nothing persists)")
	evidenceDir := fs.String("evidence-dir", "", "where evidence files go (default: STATE/evidence, or the current directory)")
	follow := fs.Bool("follow", false, "keep checking every --interval (until SIGINT/SIGTERM)")
	full := fs.Bool("full", false, "download every entry bundle and tile, recompute the tree and check it against a witnessed checkpoint")
	once := fs.Bool("once", false, "one pass even with --follow")
	interval := fs.Duration("interval", 2*time.Second, "how often --follow checks")
	rulesFile := fs.String("rules", "", "alert rules over event content, one a line: NAME: field == \"value\" && field ^= \"prefix\"")
	webhook := fs.String("alert-webhook", "", "POST each finding as JSON to this URL (queued, retried with backoff)")
	tlsCA := addTLSCAFlag(fs, "logs, witnesses and the alert webhook")
	readTokenFile := fs.String("read-token-file", "", "file holding a read token for logs that protect their entry bundles or their events (a commitment-mode log's /v1/payloads)")
	skipPayloads := fs.Bool("skip-payloads", false, "in a commitment-mode log, check the tree only: do not fetch the events, and count them as unchecked")
	exportDest := fs.String("export", "", "after a full check whose root matched, write the verified events to this file (appended), - for stdout, or an http(s) URL (implies --full)")
	exportFormat := fs.String("export-format", auditor.ExportNDJSON, "format of --export: ndjson, splunk-hec (the HEC event URL) or es-bulk (the _bulk URL)")
	exportToken := fs.String("export-token", "", "token for --export: the Splunk HEC token, the Elasticsearch API key, or a bearer token for ndjson over HTTP (better in TIDEMARK_AUDIT_EXPORT_TOKEN: a flag shows in ps)")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus /metrics on this address")
	checkEvidence := fs.String("check-evidence", "", "re-check an evidence file with the policy: exit 1 if it proves misbehaviour, 0 if not, 2 if it cannot tell")
	maxAge := fs.Duration("max-age", auditor.DefaultMaxAge, "stale when the newest quorum of cosignatures is older than this")
	clockSkew := fs.Duration("clock-skew", auditor.DefaultClockSkew, "how far in the future a cosignature may be dated and still count")
	workers := fs.Int("workers", auditor.DefaultWorkers, "entry bundles fetched at once by --full")
	compression := fs.String("compression", "auto", "entry bundles: gzip, identity, or auto (identity on loopback, gzip elsewhere)")
	progress := fs.String("progress", "auto", "progress of --full on stderr: auto (a bar on a terminal, lines otherwise), lines, off")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *policyFile == "" {
		return usageError{"--policy FILE is required: the auditor trusts nothing else"}
	}
	logger, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		return usageError{err.Error()}
	}
	pb, err := os.ReadFile(*policyFile)
	if err != nil {
		return usageError{fmt.Sprintf("couldn't read the policy: %v", err)}
	}
	policy, err := checkpoint.ParsePolicy(pb)
	if err != nil {
		return usageError{fmt.Sprintf("%s: %v", *policyFile, err)}
	}
	if *checkEvidence != "" {
		b, err := os.ReadFile(*checkEvidence)
		if err != nil {
			return usageError{fmt.Sprintf("couldn't read the evidence: %v", err)}
		}
		verdict, why := auditor.CheckEvidence(policy, b)
		fmt.Println(why)
		os.Exit(verdict)
	}
	var rules []auditor.Rule
	if *rulesFile != "" {
		b, err := os.ReadFile(*rulesFile)
		if err == nil {
			rules, err = auditor.ParseRules(b)
		}
		if err != nil {
			return usageError{fmt.Sprintf("--rules: %v", err)}
		}
	}
	var token string
	if *readTokenFile != "" {
		if token, err = readToken(*readTokenFile); err != nil {
			return usageError{fmt.Sprintf("--read-token-file: %v", err)}
		}
	}
	rootCAs, err := loadTLSCA(*tlsCA)
	if err != nil {
		return err
	}
	if *compression == "auto" {
		*compression = ""
	}
	var sink auditor.Sink
	if *exportDest != "" {
		if *skipPayloads {
			return usageError{"--export with --skip-payloads would leave out every event of a commitment-mode log: export checks each event against its commitment, so give it --read-token-file instead"}
		}
		if *follow && !*once {
			return usageError{"--export runs once: run `tidemark audit --export` from a timer with --state, and each run exports the events new since the last"}
		}
		ex, err := auditor.NewExporter(auditor.ExportConfig{Dest: *exportDest, Format: *exportFormat, Token: *exportToken, HTTPClient: exportClient(rootCAs)})
		if err != nil {
			return usageError{"--export: " + err.Error()}
		}
		sink = ex
		*full = true
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := auditor.NewMetrics(reg)
	if *metricsListen != "" {
		ln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return usageError{fmt.Sprintf("--metrics-listen: %v", err)}
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
	}
	var alerter *auditor.Alerter
	if *webhook != "" {
		alerter = auditor.NewAlerter(auditor.AlerterConfig{URL: *webhook, Metrics: metrics, RootCAs: rootCAs})
	}
	onFinding := func(f auditor.Finding) {
		level := slog.LevelInfo
		switch f.Kind.Severity() {
		case "critical":
			level = slog.LevelError
		case "warning":
			level = slog.LevelWarn
		}
		attrs := []any{"kind", f.Kind, "origin", f.Origin}
		if f.Evidence != "" {
			attrs = append(attrs, "evidence", f.Evidence)
		}
		logger.Log(context.Background(), level, f.Message, attrs...)
		if alerter != nil {
			alerter.Send(auditor.AlertFor(f))
		}
	}
	cfg := auditor.Config{
		Policy: policy, LogURL: *logURL, StateDir: *stateDir, EvidenceDir: *evidenceDir,
		ReadToken: token, SkipPayloads: *skipPayloads, Sink: sink, Compression: *compression, Rules: rules, RootCAs: rootCAs,
		MaxAge: *maxAge, ClockSkew: *clockSkew, Workers: *workers,
		OnFinding: onFinding, Metrics: metrics,
	}
	if *full {
		switch *progress {
		case "auto":
			cfg.OnProgress = auditor.ProgressPrinter(os.Stderr, auditor.IsTerminal(os.Stderr), 5*time.Second)
		case "lines":
			cfg.OnProgress = auditor.ProgressPrinter(os.Stderr, false, 5*time.Second)
		case "off":
		default:
			return usageError{"--progress: use auto, lines or off"}
		}
	}
	a, err := auditor.New(cfg)
	if err != nil {
		return usageError{err.Error()}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	code := auditor.ExitVerified
	worst := func(r *auditor.Report) {
		if c := r.ExitCode(); c == auditor.ExitMisbehaviour || c > code {
			if code != auditor.ExitMisbehaviour {
				code = c
			}
		}
	}
	var runErr error
	if *full {
		r, err := a.Full(ctx)
		runErr = err
		worst(r)
		var w io.Writer = os.Stdout
		if *exportDest == "-" {
			w = os.Stderr // stdout holds the records
		}
		printReport(w, r)
	}
	if runErr == nil && (!*full || *follow && !*once) {
		if *follow && !*once {
			logger.Info("following the log", "origin", policy.Origin(), "interval", *interval, "state", *stateDir)
			runErr = a.Follow(ctx, *interval, func(r *auditor.Report) {
				worst(r)
				logger.Debug("checked", "size", r.Checkpoint.Size, "witnessed", r.Witnessed, "findings", len(r.Findings))
			})
			if errors.Is(runErr, context.Canceled) {
				runErr = nil
			}
		} else {
			r, err := a.Check(ctx)
			runErr = err
			worst(r)
			printReport(os.Stdout, r)
		}
	}
	if alerter != nil {
		actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if dropped, failed := alerter.Close(actx); dropped+failed > 0 {
			logger.Warn("some alerts were not delivered", "dropped", dropped, "failed", failed)
		}
		cancel()
	}
	_ = a.Close()
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "tidemark audit: %v\n", tlsHint(runErr))
		if code == auditor.ExitVerified {
			code = auditor.ExitUnchecked
		}
	}
	stop()
	os.Exit(code)
	return nil
}

// exportClient posts --export batches, trusting --tls-ca's CAs if given.
func exportClient(rootCAs *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if rootCAs != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t, Timeout: time.Minute}
}

// printReport writes the outcome of one check for people and scripts.
func printReport(w io.Writer, r *auditor.Report) {
	c := r.Checkpoint
	if c.Origin != "" {
		fmt.Fprintf(w, "checkpoint: %s size %d root %x witnessed=%t", c.Origin, c.Size, c.Hash, r.Witnessed)
		if !r.Fresh.IsZero() {
			fmt.Fprintf(w, " quorum-time %s", r.Fresh.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
	if f := r.Full; f != nil {
		fmt.Fprintf(w, "full: size %d verified=%t leaves %d (event %d, raw %d, bad %d) rule-hits %d; this run %d leaves in %s (%.0f entries/s), resumed from %d\n",
			f.Checkpoint.Size, f.Verified, f.Counts.Leaves, f.Counts.Event, f.Counts.Raw, f.Counts.Bad, f.Counts.RuleHits,
			f.Checked, f.Elapsed.Round(time.Millisecond), f.Rate(), f.Resumed)
		if c := f.Counts; c.Commitment+c.Erasure > 0 {
			fmt.Fprintf(w, "contents: commitment %d (opened %d, erased %d, unchecked %d), erasure leaves %d\n",
				c.Commitment, c.Opened, c.Erased, c.Unchecked, c.Erasure)
			if c.Unchecked > 0 {
				fmt.Fprintf(w, "contents: %d events were not checked against their commitments (--skip-payloads)\n", c.Unchecked)
			}
		}
		if f.Shipped > 0 {
			fmt.Fprintf(w, "export: %d verified events exported\n", f.Shipped)
		}
	}
	for _, f := range r.Findings {
		fmt.Fprintf(w, "%s %s: %s", strings.ToUpper(f.Kind.Severity()), f.Kind, f.Message)
		if f.Evidence != "" {
			fmt.Fprintf(w, " [evidence: %s]", f.Evidence)
		}
		fmt.Fprintln(w)
	}
	switch r.ExitCode() {
	case auditor.ExitVerified:
		fmt.Fprintln(w, "result: verified")
	case auditor.ExitMisbehaviour:
		fmt.Fprintln(w, "result: MISBEHAVIOUR")
	default:
		fmt.Fprintln(w, "result: could not check")
	}
}
