// Command auditlog makes and serves the log that bench/audit.sh verifies.
//
//	auditlog gen   --dir DIR [--n 1000000] [--event-size 500]
//	auditlog serve --dir DIR [--listen 127.0.0.1:0] [--gzip]
//
// gen appends n realistic audit events (canonical event leaves, about
// event-size bytes of event each) with Tessera's POSIX appender in process,
// in big batches, and writes DIR/log.pub (the log's vkey, for fsck's
// --public_key), DIR/policy (for tidemark audit; the URL is filled in by
// serve) and the keys. serve cosigns the log's checkpoint with the bench
// witness (fresh, so the auditor finds it witnessed and fresh), serves DIR
// as static tlog-tiles files with their content types (sendfile, no
// per-request work beyond opening the file), prints its URL on stdout and
// writes DIR/policy.served. With --gzip it gzips entry bundles for clients
// that accept it, as tidemark log does.
package main

import (
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
)

const origin = "bench.tidemark.example/audit"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: auditlog gen|serve --dir DIR ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "auditlog:", err)
		os.Exit(1)
	}
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	dir := fs.String("dir", "", "directory for the log (created)")
	n := fs.Int("n", 1_000_000, "entries")
	size := fs.Int("event-size", 500, "approximate bytes of event JSON per entry")
	writers := fs.Int("writers", 8192, "concurrent appenders")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("--dir is required")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	lskey, lvkey, err := checkpoint.GenerateLogKey(origin)
	if err != nil {
		return err
	}
	wskey, wvkey, err := checkpoint.GenerateWitnessKey("bench.tidemark.example/witness")
	if err != nil {
		return err
	}
	for name, v := range map[string]string{"log.key": lskey, "log.pub": lvkey, "witness.key": wskey, "witness.pub": wvkey} {
		if err := os.WriteFile(filepath.Join(*dir, name), []byte(v), 0o600); err != nil {
			return err
		}
	}
	signer, err := checkpoint.NewLogSigner(lskey)
	if err != nil {
		return err
	}
	ctx := context.Background()
	driver, err := posix.New(ctx, posix.Config{Path: *dir})
	if err != nil {
		return err
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(4096, 50*time.Millisecond).
		WithCheckpointInterval(200 * time.Millisecond)
	app, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		return err
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	received := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for w := range *writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			var buf []byte
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				ev := event(rng, i, *size)
				leaf, _, _, err := checkpoint.AppendEventLeaf(buf[:0], ev, received.Add(time.Duration(i)*time.Microsecond), sources[i%int64(len(sources))], "")
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				if _, err := app.Add(ctx, tessera.NewEntry(leaf))(); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				buf = leaf
			}
		})
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(os.Stderr, "gen: %d/%d entries, %.0f/s\n", min(next.Load(), int64(*n)), *n, float64(next.Load())/time.Since(start).Seconds())
			}
		}
	}()
	wg.Wait()
	close(done)
	select {
	case err := <-errc:
		return err
	default:
	}
	// Wait for a checkpoint covering everything.
	for {
		cp, err := reader.ReadCheckpoint(ctx)
		if err == nil {
			if c, err := checkpoint.Parse(noteText(cp)); err == nil && c.Size >= uint64(*n) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := shutdown(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gen: %d entries in %s (%.0f/s) in %s\n", *n, time.Since(start).Round(time.Millisecond), float64(*n)/time.Since(start).Seconds(), *dir)
	return nil
}

var (
	sources   = []string{"deploy-bot", "kube-apiserver", "vault", "ci-runner", "okta-sync"}
	actions   = []string{"secret.read", "deploy.create", "firewall.update", "user.login", "pod.exec", "role.bind", "bucket.read"}
	resources = []string{"prod/db/users", "prod/api", "staging/api", "prod/vault/payments", "dev/sandbox", "prod/k8s/payments"}
	outcomes  = []string{"success", "success", "success", "failure", "denied"}
)

// event returns a realistic audit event of about size bytes.
func event(rng *rand.Rand, i int64, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":"%016x-%08x","time":"2026-11-25T%02d:%02d:%02d.%03dZ","actor":{"id":"u-%d","name":"user%d@example.com","ip":"10.%d.%d.%d"},"action":"%s","resource":"%s","outcome":"%s","details":{"request_id":"req-%x","user_agent":"kubectl/v1.31.2 (linux/amd64)","namespace":"payments","cluster":"eu-west-1-prod","count":%d,"labels":["pci","tier-1"],"note":"`,
		rng.Uint64(), i, i/3600000%24, i/60000%60, i/1000%60, i%1000, rng.IntN(5000), rng.IntN(5000), rng.IntN(256), rng.IntN(256), rng.IntN(256),
		actions[rng.IntN(len(actions))], resources[rng.IntN(len(resources))], outcomes[rng.IntN(len(outcomes))], rng.Uint32(), rng.IntN(1000))
	const pad = "rotation check for ticket OPS-4821 by the on-call engineer "
	for b.Len() < size-3 {
		b.WriteByte(pad[b.Len()%len(pad)])
	}
	b.WriteString(`"}}`)
	return []byte(b.String())
}

func noteText(signed []byte) []byte {
	if i := strings.Index(string(signed), "\n\n"); i >= 0 {
		return signed[:i+1]
	}
	return signed
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dir := fs.String("dir", "", "the log's directory (from gen)")
	listen := fs.String("listen", "127.0.0.1:0", "address")
	gz := fs.Bool("gzip", false, "gzip entry bundles for clients that accept it (as tidemark log does)")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("--dir is required")
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(*dir, name))
		if err != nil {
			fmt.Fprintln(os.Stderr, "auditlog:", err)
			os.Exit(1)
		}
		return strings.TrimSpace(string(b))
	}
	ls, err := checkpoint.NewLogSigner(read("log.key"))
	if err != nil {
		return err
	}
	ws, err := checkpoint.NewWitnessSigner(read("witness.key"))
	if err != nil {
		return err
	}
	cp, err := os.ReadFile(filepath.Join(*dir, "checkpoint"))
	if err != nil {
		return err
	}
	c, err := checkpoint.Parse(noteText(cp))
	if err != nil {
		return err
	}
	// Cosign now, and again every 30 s, so the checkpoint stays fresh.
	var mu sync.RWMutex
	var signed []byte
	cosign := func() error {
		s, err := checkpoint.Sign(c, ls, ws)
		if err != nil {
			return err
		}
		mu.Lock()
		signed = s
		mu.Unlock()
		return nil
	}
	if err := cosign(); err != nil {
		return err
	}
	go func() {
		for range time.Tick(30 * time.Second) {
			_ = cosign()
		}
	}()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	policy := fmt.Sprintf("log %s %s\nwitness w1 %s\nquorum w1\n", read("log.pub"), url, read("witness.pub"))
	if err := os.WriteFile(filepath.Join(*dir, "policy.served"), []byte(policy), 0o644); err != nil {
		return err
	}
	root, err := os.OpenRoot(*dir)
	if err != nil {
		return err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		if p == "checkpoint" {
			mu.RLock()
			s := signed
			mu.RUnlock()
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(s)
			return
		}
		if !strings.HasPrefix(p, "tile/") {
			http.NotFound(w, r)
			return
		}
		f, err := root.Open(p)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		if *gz && strings.HasPrefix(p, "tile/entries/") && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			buf := make([]byte, st.Size())
			if _, err := f.ReadAt(buf, 0); err == nil {
				_, _ = zw.Write(buf)
			}
			_ = zw.Close()
			return
		}
		http.ServeContent(w, r, "", st.ModTime(), f)
	})
	fmt.Println(url)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return srv.Close()
}
