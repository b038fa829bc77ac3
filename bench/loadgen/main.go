// Command loadgen loads a Tidemark log over HTTP and prints its figures.
//
// It sends a fixed, seeded corpus of realistic audit events (DESIGN.md's event
// shape, about --size bytes of JSON each) with a unique id per send, so nothing
// is deduplicated, in one of three modes:
//
//	events  one event per request:  POST /v1/events, Content-Type: application/json
//	ndjson  --batch events per request: POST /v1/events, Content-Type: application/x-ndjson
//	add     one event per request, raw bytes: POST /add (Tessera's conformance API)
//
// Only 2xx answers count as events written. 503 and 429 are retried after
// Retry-After (1 s when absent) and reported as retries; any other status or a
// transport error is reported as an error and the request is not retried.
//
// Measurement: requests run from the start; those that finish during --warmup
// are not counted. With --count N the run claims exactly N events after the
// warmup and stops when all of them have been answered; seconds is the time
// from the end of the warmup to the last answer. Without --count, events whose
// answer arrives within --duration after the warmup are counted and seconds is
// --duration (requests in flight at the end are drained but not counted).
// Latency is per HTTP request that answered 2xx (one event, or one batch).
//
// The last line printed is machine-readable:
//
//	RESULT mode=... events=N seconds=S events_per_sec=R p50_ms=... p99_ms=... errors=E retries=R ...
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	url       string
	mode      string
	batch     int
	workers   int
	duration  time.Duration
	count     int64
	size      int
	tokenFile string
	warmup    time.Duration
	corpus    int
	seed      uint64
	timeout   time.Duration
	run       string
	quiet     bool
	spread    spread
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "log base URL")
	flag.StringVar(&c.mode, "mode", "events", "events | ndjson | add")
	flag.IntVar(&c.batch, "batch", 1000, "events per NDJSON request (mode ndjson)")
	flag.IntVar(&c.workers, "workers", 64, "concurrent requests")
	flag.DurationVar(&c.duration, "duration", 20*time.Second, "measured time after the warmup (a cap when --count is given explicitly with it)")
	flag.Int64Var(&c.count, "count", 0, "events to write after the warmup, then stop (0: run for --duration)")
	flag.IntVar(&c.size, "size", 500, "target bytes of each event's JSON")
	flag.StringVar(&c.tokenFile, "token-file", "", "file holding a bearer token (optional)")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "time at the start that is not measured")
	flag.IntVar(&c.corpus, "corpus", 4096, "number of distinct events in the corpus")
	flag.Uint64Var(&c.seed, "seed", 1, "corpus seed")
	flag.DurationVar(&c.timeout, "timeout", 60*time.Second, "HTTP timeout per request")
	flag.StringVar(&c.run, "run-id", "", "8 hex digits in every event id (default random, so separate runs never dedup)")
	flag.BoolVar(&c.quiet, "quiet", false, "print only the RESULT line")
	flag.IntVar(&c.spread.actors, "actors", 0, "spread the actors: every send gets actor.name user-<n>, n uniform over [0, actors), zero-padded to a fixed width (0: the corpus's 12 people)")
	flag.IntVar(&c.spread.actions, "actions", 0, "spread the actions: each corpus event takes one of this many generated actions (0: the built-in 20)")
	flag.IntVar(&c.spread.resources, "resources", 0, "spread the resources: each corpus event takes one of this many generated resources, <env>/<kind>/<name>-NNN (0: the built-in 20)")
	flag.Parse()

	durationSet := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "duration" {
			durationSet = true
		}
	})
	if c.count > 0 && !durationSet {
		c.duration = 0 // no cap
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// stats is per worker, merged at the end, so the hot path takes no lock.
type stats struct {
	events    int64
	requests  int64
	bytes     int64
	lat       []time.Duration
	errors    map[string]int64 // by status ("conn" for transport errors)
	retries   map[string]int64 // 503/429 answers that were retried
	badAnswer int64            // 2xx whose body did not parse as expected
	itemErr   int64            // NDJSON results without an index
	lastErr   string
}

func newStats() *stats {
	return &stats{errors: map[string]int64{}, retries: map[string]int64{}}
}

func run(c config) error {
	switch c.mode {
	case "events", "ndjson", "add":
	default:
		return fmt.Errorf("--mode must be events, ndjson or add, not %q", c.mode)
	}
	if c.workers < 1 || c.batch < 1 || c.size < 1 || c.corpus < 1 {
		return errors.New("--workers, --batch, --size and --corpus must be positive")
	}
	if c.count <= 0 && c.duration <= 0 {
		return errors.New("give --duration or --count")
	}
	if c.mode != "ndjson" {
		c.batch = 1
	}
	if c.run == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.run = hex.EncodeToString(b[:])
	}
	if len(c.run) != 8 {
		return errors.New("--run-id must be 8 characters")
	}
	var token string
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}

	if c.spread.actors < 0 || c.spread.actions < 0 || c.spread.resources < 0 {
		return errors.New("--actors, --actions and --resources must not be negative")
	}
	corpus, err := buildCorpus(c.corpus, c.size, c.seed, c.spread)
	if err != nil {
		return err
	}
	minSz, maxSz, sum := len(corpus[0].body), 0, 0
	for _, t := range corpus {
		minSz, maxSz, sum = min(minSz, len(t.body)), max(maxSz, len(t.body)), sum+len(t.body)
	}
	avgSz := float64(sum) / float64(len(corpus))

	base := strings.TrimRight(c.url, "/")
	target, ctype := base+"/v1/events", "application/json"
	switch c.mode {
	case "ndjson":
		ctype = "application/x-ndjson"
	case "add":
		target, ctype = base+"/add", "application/octet-stream"
	}

	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * c.workers,
		MaxIdleConnsPerHost: 2 * c.workers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: tr, Timeout: c.timeout}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var (
		seq      atomic.Uint64 // send counter: unique ids
		claimed  atomic.Int64  // events claimed after the warmup (--count)
		stopping atomic.Bool
		lastDone atomic.Int64 // unix nanos of the last counted answer (--count)
	)
	start := time.Now()
	measureFrom := start.Add(c.warmup)
	var measureTo time.Time // zero: no end (count mode without cap)
	if c.duration > 0 {
		measureTo = measureFrom.Add(c.duration)
	}

	if !c.quiet {
		fmt.Printf("loadgen: mode=%s url=%s workers=%d batch=%d size=%d (corpus %d events, %d..%d bytes, avg %.0f) warmup=%s duration=%s count=%d run-id=%s actors=%d actions=%d resources=%d\n",
			c.mode, target, c.workers, c.batch, c.size, c.corpus, minSz, maxSz, avgSz, c.warmup, durOrNone(c.duration), c.count, c.run, c.spread.actors, c.spread.actions, c.spread.resources)
	}

	all := make([]*stats, c.workers)
	var wg sync.WaitGroup
	for w := range c.workers {
		st := newStats()
		all[w] = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for ctx.Err() == nil && !stopping.Load() {
				now := time.Now()
				if !measureTo.IsZero() && now.After(measureTo) {
					return
				}
				// How many events does this request carry, and is it measured?
				n := c.batch
				counted := false
				if c.count > 0 {
					if now.After(measureFrom) {
						got := claimed.Add(int64(n))
						if over := got - c.count; over > 0 {
							n -= int(over)
							if n <= 0 {
								stopping.Store(true)
								return
							}
						}
						counted = true
					}
				}
				buf = buf[:0]
				for range n {
					s := seq.Add(1) - 1
					idx := int(s % uint64(len(corpus)))
					buf = corpus[idx].appendTo(buf, c.run, idx, s)
					if c.mode == "ndjson" {
						buf = append(buf, '\n')
					}
				}
				body := slices.Clone(buf) // the transport may read the body after Do returns
				ok, lat, done := send(ctx, client, target, ctype, token, body, n, c.mode, st)
				if c.count == 0 {
					counted = !done.Before(measureFrom) && (measureTo.IsZero() || !done.After(measureTo))
				}
				st.requests++
				if ok > 0 && counted {
					st.events += int64(ok)
					st.bytes += int64(len(body))
					st.lat = append(st.lat, lat)
					if c.count > 0 {
						for {
							old := lastDone.Load()
							if done.UnixNano() <= old || lastDone.CompareAndSwap(old, done.UnixNano()) {
								break
							}
						}
					}
				}
			}
		}()
	}
	if !c.quiet {
		go progress(ctx, &stopping, start, measureFrom)
	}
	wg.Wait()
	interrupted := ctx.Err() != nil

	// Merge.
	tot := newStats()
	for _, st := range all {
		tot.events += st.events
		tot.requests += st.requests
		tot.bytes += st.bytes
		tot.lat = append(tot.lat, st.lat...)
		tot.badAnswer += st.badAnswer
		tot.itemErr += st.itemErr
		for k, v := range st.errors {
			tot.errors[k] += v
		}
		for k, v := range st.retries {
			tot.retries[k] += v
		}
		if st.lastErr != "" {
			tot.lastErr = st.lastErr
		}
	}
	var secs float64
	switch {
	case c.count > 0:
		end := time.Unix(0, lastDone.Load())
		if lastDone.Load() == 0 {
			end = time.Now()
		}
		secs = end.Sub(measureFrom).Seconds()
	default:
		end := measureTo
		if interrupted && time.Now().Before(end) {
			end = time.Now()
		}
		secs = end.Sub(measureFrom).Seconds()
	}
	if secs <= 0 {
		secs = 1e-9
	}
	slices.Sort(tot.lat)
	nerr, nretry := sumMap(tot.errors), sumMap(tot.retries)
	rate := float64(tot.events) / secs

	if !c.quiet {
		fmt.Printf("\n== loadgen %s against %s\n", c.mode, target)
		fmt.Printf("events written: %d in %.2f s = %.0f events/s  (%d measured requests, %.0f req/s, %.1f MB/s of event bytes)\n",
			tot.events, secs, rate, len(tot.lat), float64(len(tot.lat))/secs, float64(tot.bytes)/secs/1e6)
		fmt.Printf("latency per request: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
			ms(pct(tot.lat, 50)), ms(pct(tot.lat, 90)), ms(pct(tot.lat, 99)), ms(pct(tot.lat, 100)))
		fmt.Printf("requests sent (incl. warmup and drain): %d\n", tot.requests)
		fmt.Printf("errors (not retried): %d %s\n", nerr, fmtMap(tot.errors))
		fmt.Printf("retries (503/429 honoured): %d %s\n", nretry, fmtMap(tot.retries))
		if tot.badAnswer > 0 || tot.itemErr > 0 {
			fmt.Printf("2xx answers with an unexpected body: %d; NDJSON items without an index: %d\n", tot.badAnswer, tot.itemErr)
		}
		if tot.lastErr != "" {
			fmt.Printf("last error: %s\n", tot.lastErr)
		}
		if interrupted {
			fmt.Println("interrupted: figures cover the time until the interrupt")
		}
	}
	fmt.Printf("RESULT mode=%s events=%d seconds=%.3f events_per_sec=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d retries=%d bad_answers=%d workers=%d batch=%d size=%.0f\n",
		c.mode, tot.events, secs, rate, ms(pct(tot.lat, 50)), ms(pct(tot.lat, 99)), nerr+tot.itemErr, nretry, tot.badAnswer, c.workers, c.batch, avgSz)
	if tot.events == 0 {
		return errors.New("no event was written")
	}
	return nil
}

// send POSTs body until it gets an answer that is not 503/429. It returns the
// number of events written (0 on failure), the latency of the answering
// request and the time the answer arrived.
func send(ctx context.Context, client *http.Client, url, ctype, token string, body []byte, n int, mode string, st *stats) (int, time.Duration, time.Time) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			st.errors["request"]++
			st.lastErr = err.Error()
			return 0, 0, time.Now()
		}
		req.Header.Set("Content-Type", ctype)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return 0, 0, time.Now()
			}
			st.errors["conn"]++
			st.lastErr = err.Error()
			time.Sleep(100 * time.Millisecond) // do not spin on a dead server
			return 0, 0, time.Now()
		}
		ans, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done := time.Now()
		lat := done.Sub(t0)
		if err != nil {
			st.errors["read"]++
			st.lastErr = err.Error()
			return 0, 0, done
		}
		switch code := resp.StatusCode; {
		case code >= 200 && code < 300:
			return parseAnswer(mode, ans, n, st), lat, done
		case code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests:
			st.retries[strconv.Itoa(code)]++
			select {
			case <-ctx.Done():
				return 0, 0, time.Now()
			case <-time.After(retryAfter(resp.Header.Get("Retry-After"))):
			}
		default:
			st.errors[strconv.Itoa(code)]++
			st.lastErr = fmt.Sprintf("%d %s", code, bytes.TrimSpace(ans[:min(len(ans), 300)]))
			return 0, lat, done
		}
	}
}

// parseAnswer checks a 2xx body and returns how many events it acknowledges.
func parseAnswer(mode string, ans []byte, n int, st *stats) int {
	switch mode {
	case "add":
		line, _, _ := bytes.Cut(ans, []byte("\n"))
		if _, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 10, 64); err != nil {
			st.badAnswer++
		}
		return n
	case "events":
		var r struct {
			Index *uint64 `json:"index"`
		}
		if json.Unmarshal(ans, &r) != nil || r.Index == nil {
			st.badAnswer++
		}
		return n
	default: // ndjson
		var r struct {
			Results []struct {
				Index *uint64 `json:"index"`
			} `json:"results"`
		}
		if json.Unmarshal(ans, &r) != nil || len(r.Results) != n {
			st.badAnswer++
			return n
		}
		ok := 0
		for _, x := range r.Results {
			if x.Index != nil {
				ok++
			}
		}
		st.itemErr += int64(n - ok)
		return ok
	}
}

func retryAfter(h string) time.Duration {
	d := time.Second
	if h != "" {
		if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
			d = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(h); err == nil {
			d = time.Until(t)
		}
	}
	return min(max(d, 10*time.Millisecond), 30*time.Second)
}

func progress(ctx context.Context, stopping *atomic.Bool, start, measureFrom time.Time) {
	// A heartbeat on stderr only; the figures are merged at the end.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if stopping.Load() {
				return
			}
			fmt.Fprintf(os.Stderr, "loadgen: %.0fs elapsed%s\n", time.Since(start).Seconds(), map[bool]string{true: " (warmup)", false: ""}[time.Now().Before(measureFrom)])
		}
	}
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sumMap(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func fmtMap(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return "(" + strings.Join(parts, " ") + ")"
}

func durOrNone(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return d.String()
}
