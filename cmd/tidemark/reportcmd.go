package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/auditor"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/report"
)

func runReport(args []string) error {
	fs := newFlags("report", "--policy FILE --from TIME --to TIME --out report.html [--json report.json] [flags]",
		"Verifies the log in full, as `tidemark audit --full` does, and writes a self-contained HTML report (and\n"+
			"with --json the same figures for programs) for a compliance auditor about the entries the log received\n"+
			"in [--from, --to): the witnessed checkpoint and its cosigners, the verification's result, counts by\n"+
			"source and action, erasures, the controls it supports and the commands that re-check it. TIME is RFC 3339\n"+
			"(2026-01-31T12:00:00Z) or a date (2026-01-31, midnight UTC). Exit status: 0 verified, 1 misbehaviour\n"+
			"found, 2 could not check; the report is written in every case, and says so.")
	policyFile := fs.String("policy", "", "trust policy (log key and URL, witnesses and URLs, quorum)")
	logURL := fs.String("log", "", "the log's URL (default: the policy's log line)")
	from := fs.String("from", "", "start of the period, inclusive: RFC 3339 or a date (required)")
	to := fs.String("to", "", "end of the period, exclusive: RFC 3339 or a date (required)")
	out := fs.String("out", "", "write the HTML report to this file (required)")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	stateDir := fs.String("state", "", "an auditor state directory: the checkpoint it accepted before is checked and listed (default: none)")
	readTokenFile := fs.String("read-token-file", "", "file holding a read token for logs that protect their entry bundles or their events (a commitment-mode log's /v1/payloads)")
	skipPayloads := fs.Bool("skip-payloads", false, "in a commitment-mode log, check the tree only: do not fetch the events (they are counted by source, not by action)")
	tlsCA := addTLSCAFlag(fs, "logs and witnesses")
	workers := fs.Int("workers", auditor.DefaultWorkers, "entry bundles fetched at once")
	compression := fs.String("compression", "auto", "entry bundles: gzip, identity, or auto (identity on loopback, gzip elsewhere)")
	maxAge := fs.Duration("max-age", auditor.DefaultMaxAge, "stale when the newest quorum of cosignatures is older than this")
	progress := fs.String("progress", "auto", "progress on stderr: auto (a bar on a terminal, lines otherwise), lines, off")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *policyFile == "":
		return usageError{"--policy FILE is required: the report trusts nothing else"}
	case *from == "" || *to == "":
		return usageError{"--from and --to are required: the period the report is about"}
	case *out == "":
		return usageError{"--out FILE is required: where the HTML report goes"}
	}
	fromT, err := parseReportTime(*from)
	if err != nil {
		return usageError{fmt.Sprintf("--from: %v", err)}
	}
	toT, err := parseReportTime(*to)
	if err != nil {
		return usageError{fmt.Sprintf("--to: %v", err)}
	}
	if !fromT.Before(toT) {
		return usageError{fmt.Sprintf("--from %s is not before --to %s: the period [from, to) is empty", fromT.Format(time.RFC3339), toT.Format(time.RFC3339))}
	}
	pb, err := readLimited(*policyFile, checkpoint.MaxPolicySize)
	if err != nil {
		return usageError{fmt.Sprintf("couldn't read the policy: %v", err)}
	}
	policy, err := checkpoint.ParsePolicy(pb)
	if err != nil {
		return usageError{fmt.Sprintf("%s: %v", *policyFile, err)}
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
	cfg := auditor.Config{
		Policy: policy, LogURL: *logURL, StateDir: *stateDir, ReadToken: token, RootCAs: rootCAs,
		Compression: *compression, MaxAge: *maxAge, Workers: *workers, SkipPayloads: *skipPayloads,
	}
	if *stateDir == "" {
		// Evidence of a split view goes beside the report.
		cfg.EvidenceDir = filepath.Join(filepath.Dir(*out), "evidence")
	}
	switch *progress {
	case "auto":
		cfg.OnProgress = auditor.NamedProgressPrinter(os.Stderr, auditor.IsTerminal(os.Stderr), 5*time.Second, "report")
	case "lines":
		cfg.OnProgress = auditor.NamedProgressPrinter(os.Stderr, false, 5*time.Second, "report")
	case "off":
	default:
		return usageError{"--progress: use auto, lines or off"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := report.Run(ctx, report.Options{Auditor: cfg, PolicyText: pb, From: fromT, To: toT, Version: versionString()})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return exitError{auditor.ExitUnchecked, errors.New("interrupted: no report written")}
		}
		return usageError{tlsHint(err).Error()}
	}
	var html bytes.Buffer
	if err := rep.WriteHTML(&html); err != nil {
		return err
	}
	if err := writeReportFile(*out, html.Bytes()); err != nil {
		return err
	}
	if *jsonOut != "" {
		var js bytes.Buffer
		if err := rep.WriteJSON(&js); err != nil {
			return err
		}
		if err := writeReportFile(*jsonOut, js.Bytes()); err != nil {
			return err
		}
	}
	v := rep.Verification
	fmt.Fprintf(os.Stdout, "report: %s, %d entries in the period, log of %d entries %s; wrote %s", rep.Log.Origin, rep.Entries.Entries, v.Size, v.Result, *out)
	if *jsonOut != "" {
		fmt.Fprintf(os.Stdout, " and %s", *jsonOut)
	}
	fmt.Fprintln(os.Stdout)
	for _, f := range v.Findings {
		fmt.Fprintf(os.Stderr, "%s %s: %s\n", f.Severity, f.Kind, f.Message)
	}
	if v.ExitCode != auditor.ExitVerified {
		return exitError{v.ExitCode, fmt.Errorf("the log did not verify (%s): the report says so", v.Result)}
	}
	return nil
}

// parseReportTime reads RFC 3339, or a date (midnight UTC).
func parseReportTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-01-31T12:00:00Z) nor a date (2026-01-31)", s)
}

// writeReportFile writes b to path whole or not at all.
func writeReportFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
