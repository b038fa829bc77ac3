package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
	tlog "github.com/tidemark/tidemark/log"
	"github.com/tidemark/tidemark/witness"
	"k8s.io/klog/v2"
)

// demoOrigin is the demo log's origin; witnesses are named after it.
const demoOrigin = "demo.tidemark.localhost/log"

func runDemo(args []string) error {
	fs := newFlags("demo", "[--data DIR] [--exit]",
		"Runs a log and three witnesses in this process on free loopback ports (the log's policy needs 2 of the 3),\n"+
			"writes the policy, posts a few events, waits for their witnessed receipts, verifies one with the code of\n"+
			"`tidemark verify`, prints it with the URLs to look at, and keeps serving until Ctrl-C.")
	data := fs.String("data", "", "directory for the keys, the policy, the log and the witnesses' state (default: a new temporary directory); reusing one continues its log")
	exit := fs.Bool("exit", false, "stop after printing the receipt instead of serving until Ctrl-C")
	logLevel := fs.String("log-level", "warn", "log level of the servers: debug, info, warn, error")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	logger, err := newLogger("text", *logLevel)
	if err != nil {
		return usageError{err.Error()}
	}
	klog.SetSlogLogger(logger.With("component", "tessera"))
	dir := *data
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tidemark-demo-"); err != nil {
			return err
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	d := &demo{dir: dir, log: logger}
	defer d.stop()
	if err := d.start(); err != nil {
		return err
	}
	if err := d.show(); err != nil {
		return err
	}
	if *exit {
		return nil
	}
	fmt.Println("\nServing until Ctrl-C.")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	fmt.Println("\nstopping")
	return nil
}

// demo is a log and its witnesses running in this process.
type demo struct {
	dir    string
	log    *slog.Logger
	policy []byte
	logURL string
	wURLs  []string
	stops  []func() // in reverse order of start
}

func (d *demo) start() error {
	keys, _, err := tlog.LoadKeys(filepath.Join(d.dir, "log"), nil, demoOrigin)
	if err != nil {
		return err
	}
	// The witnesses accept this log: its key in their logs/v0 list.
	logs := filepath.Join(d.dir, "witness-logs.txt")
	if err := os.WriteFile(logs, []byte("logs/v0\nvkey "+keys.VKeys[0]+"\nqpd 1000000\ncontact tidemark demo\n"), 0o644); err != nil {
		return err
	}
	// The log's address first: the policy names it, so that verifiers
	// (tidemark audit) find the log from the policy alone.
	logLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("couldn't listen: %w", err)
	}
	d.stops = append(d.stops, func() { logLn.Close() }) // in case the log never serves it
	logURL := "http://" + logLn.Addr().String()
	var policy strings.Builder
	fmt.Fprintf(&policy, "# Tidemark demo: the log, its three witnesses, and the quorum: 2 of 3.\nlog %s %s\n", keys.VKeys[0], logURL)
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("w%d", i)
		w, err := witness.New(context.Background(), witness.Config{
			Dir: filepath.Join(d.dir, name), Name: "demo.tidemark.localhost/" + name, LogsFile: logs, Logger: d.log.With("witness", name),
		})
		if err != nil {
			return fmt.Errorf("witness %s: %w", name, err)
		}
		u, stop, err := serve(w.Handler(true))
		if err != nil {
			w.Close()
			return err
		}
		d.stops = append(d.stops, func() { stop(); w.Close() })
		d.wURLs = append(d.wURLs, u)
		fmt.Fprintf(&policy, "witness %s %s %s\n", name, w.VKey(), u)
	}
	policy.WriteString("group demo 2 w1 w2 w3\nquorum demo\n")
	d.policy = []byte(policy.String())
	if err := os.WriteFile(filepath.Join(d.dir, "policy.txt"), d.policy, 0o644); err != nil {
		return err
	}
	p, err := checkpoint.ParsePolicy(d.policy)
	if err != nil {
		return err
	}
	s, err := tlog.New(context.Background(), tlog.Config{
		Dir: filepath.Join(d.dir, "log"), Keys: keys, Policy: p, PolicyText: d.policy, Logger: d.log.With("server", "log"),
	})
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	stop := serveOn(logLn, s.Handler(true))
	d.stops = append(d.stops, func() { stop(); s.Close(context.Background()) })
	d.logURL = logURL
	return nil
}

// show posts events, verifies a receipt, and prints what to look at.
func (d *demo) show() error {
	fmt.Printf("Tidemark demo: a log and three witnesses on this machine; a checkpoint needs 2 of the 3 cosignatures.\n\n")
	fmt.Printf("  data:     %s\n  policy:   %s\n  log:      %s\n", d.dir, filepath.Join(d.dir, "policy.txt"), d.logURL)
	for i, u := range d.wURLs {
		fmt.Printf("  witness:  w%d %s\n", i+1, u)
	}
	c, err := client.New(d.logURL, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events := []any{
		map[string]any{"actor": "alice", "action": "secret.read", "resource": "prod/db/users", "outcome": "success"},
		map[string]any{"actor": "deploy-bot", "action": "deploy.create", "resource": "prod/api", "outcome": "success"},
		map[string]any{"actor": "mallory", "action": "firewall.update", "resource": "prod/edge", "outcome": "denied"},
	}
	fmt.Printf("\nPosting %d events and waiting for a witnessed checkpoint (about a second)...\n", len(events))
	results, err := c.SubmitBatch(ctx, events, client.Wait())
	if err != nil {
		return err
	}
	r := results[0].Receipt
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"receipt.json":       append(js, '\n'),
		"receipt.tlog-proof": []byte(r.Proof),
		"receipt.leaf":       r.Leaf,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d.dir, name), b, 0o644); err != nil {
			return err
		}
	}
	// The same check as `tidemark verify`, on the file it would read.
	v, err := verifyReceipt(d.policy, js, nil)
	if err != nil {
		return fmt.Errorf("the demo's own receipt did not verify: %w", err)
	}
	fmt.Printf("\nThe receipt of entry %d (%s), a C2SP tlog-proof@v1:\n\n%s\n", r.Index, filepath.Join(d.dir, "receipt.json"), indent(r.Proof))
	fmt.Printf("Verified offline with the policy alone:\n%s", describeVerified(v))
	fmt.Printf(`
Look around:
  %[1]s/                     the web page: status, witnesses, entries, search, and a check of any entry in your browser
  %[1]s/v1/search?actor=alice  search (also: tidemark search --log %[1]s --actor alice)
  %[1]s/checkpoint           the latest checkpoint, with the log's signature and two cosignatures
  %[1]s/v1/policy            the policy a verifier needs
  %[1]s/v1/receipt/1         the receipt of entry 1
  %[1]s/metrics              metrics, with tidemark_log_witness_requests_total per witness
  %[2]s/logs               what witness w1 knows of the log
Check the receipt yourself, audit the whole log with the policy alone, or post more:
  tidemark verify --policy %[3]s %[4]s
  tidemark audit --policy %[3]s --full
  echo '{"actor":"you","action":"demo.try"}' | tidemark submit --log %[1]s --wait
`, d.logURL, d.wURLs[0], filepath.Join(d.dir, "policy.txt"), filepath.Join(d.dir, "receipt.json"))
	return nil
}

func (d *demo) stop() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
}

// serve serves h on a free loopback port and returns its URL and a stop
// function that waits for requests in flight.
func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("couldn't listen: %w", err)
	}
	return "http://" + ln.Addr().String(), serveOn(ln, h), nil
}

// serveOn serves h on ln and returns a stop function that waits for
// requests in flight.
func serveOn(ln net.Listener, h http.Handler) func() {
	// The demo's log waits for witnesses as long as the log's default.
	hs := newHTTPServer(ln.Addr().String(), h, 10*time.Second)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "serving %s: %v\n", ln.Addr(), err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}
}

func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" && l != "\n" {
			lines[i] = "    " + l
		}
	}
	return strings.Join(lines, "")
}
