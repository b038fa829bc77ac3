// Command receipt measures the time from POST /v1/events?wait=witnessed to
// the receipt, on a real `tidemark log` with three real `tidemark witness`
// processes and a 2-of-3 policy, at fixed arrival rates (open loop: a new
// request every 1/rate seconds whatever the answers), once with the
// witnesses on plain loopback and once behind a proxy that delays each
// witness request by --latency. With --runs N each setup runs every rate N
// times, the rates in order on odd runs and reversed on even runs (ABBA).
// With --results FILE it appends each run's figures to FILE as lines of JSON
// (the format of bench/lib.sh's record, read by bench/report), with the
// latency distribution as quantiles.
//
//	go build -o bench/.bin/tidemark ./cmd/tidemark
//	go run ./bench/receipt --tidemark bench/.bin/tidemark
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

func main() {
	bin := flag.String("tidemark", "bench/.bin/tidemark", "the tidemark binary")
	rates := flag.String("rates", "100,1000", "arrival rates to run, events per second")
	duration := flag.Duration("duration", 20*time.Second, "measured time per rate")
	warmup := flag.Duration("warmup", 3*time.Second, "time per rate before measuring")
	latencies := flag.String("latencies", "0,100ms", "added latency per witness request, one setup each")
	logFlags := flag.String("log-flags", "", "extra flags for tidemark log, space-separated")
	runs := flag.Int("runs", 1, "runs of every rate per setup (rates in order on odd runs, reversed on even runs)")
	results := flag.String("results", "", "append each run's figures to this file as lines of JSON (bench/README.md)")
	flag.Parse()

	var rateList []int
	for _, rs := range strings.Split(*rates, ",") {
		rate, err := strconv.Atoi(rs)
		if err != nil || rate <= 0 {
			fatalf("rate %q: want a positive number", rs)
		}
		rateList = append(rateList, rate)
	}
	var out *os.File
	if *results != "" {
		var err error
		if out, err = os.OpenFile(*results, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
			fatalf("%v", err)
		}
		defer out.Close()
	}
	ok := true
	for _, ls := range strings.Split(*latencies, ",") {
		lat, err := time.ParseDuration(ls)
		if err != nil {
			fatalf("latency %q: %v", ls, err)
		}
		s := setUp(*bin, lat, strings.Fields(*logFlags))
		s.results = out
		for n := 1; n <= *runs; n++ {
			order := slices.Clone(rateList)
			if n%2 == 0 {
				slices.Reverse(order)
			}
			for _, rate := range order {
				ok = s.run(n, rate, *warmup, *duration) && ok
			}
		}
		s.tearDown()
	}
	if !ok {
		os.Exit(1)
	}
}

type setup struct {
	dir      string
	latency  time.Duration
	logFlags string
	results  *os.File // --results, or nil
	procs    []*exec.Cmd
	proxies  []*http.Server
	logURL   string
	policy   *checkpoint.Policy
}

func setUp(bin string, latency time.Duration, logFlags []string) *setup {
	dir, err := os.MkdirTemp("", "tidemark-bench-receipt-")
	if err != nil {
		fatalf("%v", err)
	}
	s := &setup{dir: dir, latency: latency, logFlags: strings.Join(logFlags, " ")}
	skey, vkey, err := checkpoint.GenerateLogKey("bench.tidemark.localhost/log")
	if err != nil {
		fatalf("%v", err)
	}
	must(os.WriteFile(filepath.Join(dir, "log.key"), []byte(skey+"\n"), 0o600))
	logs := filepath.Join(dir, "witness-logs")
	must(os.WriteFile(logs, []byte("logs/v0\nvkey "+vkey+"\nqpd 100000000\n"), 0o644))
	var policy strings.Builder
	policy.WriteString("log " + vkey + "\n")
	for i := 1; i <= 3; i++ {
		wdir := filepath.Join(dir, fmt.Sprintf("w%d", i))
		addr := freeAddr()
		s.start(bin, "witness", "--data", wdir, "--logs", logs, "--listen", addr, "--name", fmt.Sprintf("bench.tidemark.localhost/w%d", i), "--log-level", "warn")
		waitHealthy("http://" + addr)
		vk, err := os.ReadFile(filepath.Join(wdir, "witness.pub"))
		if err != nil {
			fatalf("%v", err)
		}
		wurl := "http://" + addr
		if latency > 0 {
			wurl = s.proxy(wurl, latency)
		}
		fmt.Fprintf(&policy, "witness w%d %s %s\n", i, strings.TrimSpace(string(vk)), wurl)
	}
	policy.WriteString("group g 2 w1 w2 w3\nquorum g\n")
	pf := filepath.Join(dir, "policy")
	must(os.WriteFile(pf, []byte(policy.String()), 0o644))
	if s.policy, err = checkpoint.ParsePolicy([]byte(policy.String())); err != nil {
		fatalf("%v", err)
	}
	addr := freeAddr()
	args := append([]string{"log", "--data", filepath.Join(dir, "log"), "--key", filepath.Join(dir, "log.key"), "--policy", pf, "--listen", addr, "--log-level", "warn"}, logFlags...)
	s.start(bin, args...)
	s.logURL = "http://" + addr
	waitHealthy(s.logURL)
	fmt.Printf("# setup: 3 witnesses (quorum 2), added latency per witness request %v; log flags %q\n", latency, strings.Join(logFlags, " "))
	return s
}

func (s *setup) start(bin string, args ...string) {
	cmd := exec.Command(bin, args...)
	f, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("%s-%d.out", args[0], len(s.procs))))
	if err != nil {
		fatalf("%v", err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
	}
	s.procs = append(s.procs, cmd)
}

// proxy serves a reverse proxy to target that holds each request for
// latency before forwarding it, and returns its URL.
func (s *setup) proxy(target string, latency time.Duration) string {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go hs.Serve(ln)
	s.proxies = append(s.proxies, hs)
	return "http://" + ln.Addr().String()
}

func (s *setup) tearDown() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Process.Signal(syscall.SIGTERM)
		s.procs[i].Wait()
	}
	for _, p := range s.proxies {
		p.Close()
	}
	if os.Getenv("KEEP_TMP") != "1" {
		os.RemoveAll(s.dir)
	} else {
		fmt.Printf("# kept %s\n", s.dir)
	}
}

type sample struct {
	at      time.Time
	latency time.Duration
	status  int
	err     error
	body    []byte
}

// run sends rate requests a second for warmup+duration and reports the
// latencies of those sent after the warmup, as run number n.
func (s *setup) run(n, rate int, warmup, duration time.Duration) bool {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxConnsPerHost: 0}, Timeout: time.Minute}
	var (
		mu      sync.Mutex
		samples []sample
		wg      sync.WaitGroup
	)
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	interval := time.Second / time.Duration(rate)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) {
			break
		}
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			body := fmt.Sprintf(`{"actor":"bench","action":"bench.receipt","n":%d,"rate":%d}`, i, rate)
			t0 := time.Now()
			resp, err := hc.Post(s.logURL+"/v1/events?wait=witnessed", "application/json", strings.NewReader(body))
			smp := sample{at: t0, err: err}
			if err == nil {
				smp.body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				smp.status = resp.StatusCode
			}
			smp.latency = time.Since(t0)
			if t0.Before(measureFrom) {
				return
			}
			if i%50 != 0 {
				smp.body = nil // keep a sample of receipts to verify
			}
			mu.Lock()
			samples = append(samples, smp)
			mu.Unlock()
		}(i, at)
	}
	wg.Wait()
	var lat []time.Duration
	errs, verified, bad := 0, 0, 0
	for _, smp := range samples {
		if smp.err != nil || smp.status != http.StatusOK {
			errs++
			continue
		}
		lat = append(lat, smp.latency)
		if smp.body != nil {
			var a struct{ Receipt *checkpoint.Receipt }
			if json.Unmarshal(smp.body, &a) != nil || a.Receipt == nil {
				bad++
			} else if _, _, err := a.Receipt.Verify(s.policy); err != nil {
				bad++
			} else {
				verified++
			}
		}
	}
	if os.Getenv("BENCH_TRACE") == "1" {
		slices.SortFunc(samples, func(a, b sample) int { return a.at.Compare(b.at) })
		for _, smp := range samples {
			fmt.Printf("# trace %.3f %.3f %d\n", smp.at.Sub(start).Seconds(), smp.latency.Seconds(), smp.status)
		}
	}
	s.printMetrics()
	slices.Sort(lat)
	q := func(p float64) string {
		if len(lat) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", lat[min(len(lat)-1, int(p*float64(len(lat))))].Seconds())
	}
	achieved := float64(len(samples)) / duration.Seconds()
	fmt.Printf("RESULT latency=%v rate=%d sent_per_s=%.0f ok=%d errors=%d p50_s=%s p90_s=%s p99_s=%s max_s=%s receipts_verified=%d receipts_bad=%d run=%d\n",
		s.latency, rate, achieved, len(lat), errs, q(0.50), q(0.90), q(0.99), q(1.0-1e-9), verified, bad, n)
	s.record(n, rate, lat, errs, achieved)
	if errs > 0 {
		for _, smp := range samples {
			if smp.err != nil || smp.status != 200 {
				fmt.Printf("# first error: status %d err %v body %s\n", smp.status, smp.err, bytes.TrimSpace(smp.body))
				break
			}
		}
	}
	return errs == 0 && bad == 0
}

// quantile is the latency in seconds (to 0.1 ms) at percent p (0-100) of
// sorted, by the nearest rank at or below, as the RESULT line's figures.
func quantile(sorted []time.Duration, p float64) float64 {
	i := min(len(sorted)-1, int(p/100*float64(len(sorted))))
	return math.Round(sorted[i].Seconds()*1e4) / 1e4
}

// record appends the run's figures to --results: p50, p90, p99 and max,
// errors, and the distribution (latency_quantiles, value p50, quantiles at
// 0, 1, ..., 99, 99.9 and 100 percent) for bench/report's plot. Comparison
// receipt-RATE, or receipt-RATE+LATENCY with a delaying proxy.
func (s *setup) record(n, rate int, sorted []time.Duration, errs int, sentPerSec float64) {
	if s.results == nil {
		return
	}
	comparison := fmt.Sprintf("receipt-%d", rate)
	if s.latency > 0 {
		comparison += "+" + s.latency.String()
	}
	now := time.Now().UTC().Format(time.RFC3339)
	var load *float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				load = &v
			}
		}
	}
	write := func(metric, unit string, value *float64, quantiles [][2]float64) {
		rec := map[string]any{
			"script": "receipt", "comparison": comparison, "contender": "tidemark", "metric": metric, "unit": unit,
			"value": value, "run": n, "loadavg": load, "time": now,
			"rate": rate, "witness_latency": s.latency.String(), "log_flags": s.logFlags,
			"ok": len(sorted), "errors": errs, "sent_per_s": math.Round(sentPerSec),
		}
		if quantiles != nil {
			rec["quantiles"] = quantiles
		}
		b, err := json.Marshal(rec)
		if err != nil {
			fatalf("%v", err)
		}
		if _, err := s.results.Write(append(b, '\n')); err != nil {
			fatalf("--results: %v", err)
		}
	}
	e := float64(errs)
	write("errors", "requests", &e, nil)
	if len(sorted) == 0 {
		write("p50_s", "s", nil, nil)
		return
	}
	for _, m := range []struct {
		name string
		p    float64
	}{{"p50_s", 50}, {"p90_s", 90}, {"p99_s", 99}, {"max_s", 100}} {
		v := quantile(sorted, m.p)
		write(m.name, "s", &v, nil)
	}
	var qs [][2]float64
	for p := 0; p <= 99; p++ {
		qs = append(qs, [2]float64{float64(p), quantile(sorted, float64(p))})
	}
	qs = append(qs, [2]float64{99.9, quantile(sorted, 99.9)}, [2]float64{100, quantile(sorted, 100)})
	p50 := quantile(sorted, 50)
	write("latency_quantiles", "s", &p50, qs)
}

// printMetrics prints the log's witness metrics: request counts and time
// per witness, and quorum failures.
func (s *setup) printMetrics() {
	resp, err := http.Get(s.logURL + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "tidemark_log_witness_request_seconds_sum") || strings.HasPrefix(l, "tidemark_log_witness_request_seconds_count") ||
			strings.HasPrefix(l, "tidemark_log_witness_quorum_failures_total ") || strings.HasPrefix(l, "tidemark_log_witness_requests_total{") {
			fmt.Printf("# metric %s\n", l)
		}
	}
}

func waitHealthy(base string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fatalf("%s did not become healthy", base)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func must(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "receipt bench: "+format+"\n", args...)
	os.Exit(1)
}
