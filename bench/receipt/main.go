// Command receipt measures the time from POST /v1/events?wait=witnessed to
// the receipt, on a real `tidemark log` with three real `tidemark witness`
// processes and a 2-of-3 policy, at fixed arrival rates (open loop: a new
// request every 1/rate seconds whatever the answers), once with the
// witnesses on plain loopback and once behind a proxy that delays each
// witness request by --latency.
//
// With --base, a second binary (the baseline) runs the same setups and
// rates: the two alternate ABBA over --runs runs (odd runs base first, even
// runs base last), each run on fresh witnesses and a fresh log, and the
// summary gives each one's median and spread (min-max) per rate.
//
//	go build -o bench/.bin/tidemark ./cmd/tidemark
//	go run ./bench/receipt --tidemark bench/.bin/tidemark
//	go run ./bench/receipt --tidemark bench/.bin/tidemark --base bench/.bin/tidemark-base --runs 3
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	base := flag.String("base", "", "a baseline tidemark binary to alternate with --tidemark (ABBA over --runs)")
	runs := flag.Int("runs", 1, "runs of each binary")
	flag.Parse()

	type contender struct{ name, bin string }
	contenders := []contender{{"new", *bin}}
	if *base != "" {
		contenders = []contender{{"base", *base}, {"new", *bin}}
	}
	var results []result
	ok := true
	for run := 1; run <= *runs; run++ {
		order := slices.Clone(contenders)
		if run%2 == 0 {
			slices.Reverse(order)
		}
		for _, ls := range strings.Split(*latencies, ",") {
			lat, err := time.ParseDuration(ls)
			if err != nil {
				fatalf("latency %q: %v", ls, err)
			}
			for _, c := range order {
				fmt.Printf("# run %d: %s (%s)\n", run, c.name, c.bin)
				s := setUp(c.bin, lat, strings.Fields(*logFlags))
				for _, rs := range strings.Split(*rates, ",") {
					rate, err := strconv.Atoi(rs)
					if err != nil {
						fatalf("rate %q: %v", rs, err)
					}
					r := s.run(rate, *warmup, *duration)
					r.name, r.run = c.name, run
					ok = r.ok && ok
					results = append(results, r)
				}
				s.tearDown()
			}
		}
	}
	if len(results) > len(strings.Split(*rates, ","))*len(strings.Split(*latencies, ",")) {
		summarize(results)
	}
	if !ok {
		os.Exit(1)
	}
}

// A result is one rate's run on one binary.
type result struct {
	name          string // "base" or "new"
	run           int
	latency       time.Duration
	rate          int
	p50, p90, p99 float64 // seconds
	logCPU        float64 // CPU seconds per second of the log process while measured
	witnessCPU    float64 // of the three witness processes together
	witnessReqs   float64 // add-checkpoint requests per second per witness (the log's count)
	ok            bool
}

// summarize prints, per added latency, rate and binary, the median and
// the spread (min-max) of each figure over the runs.
func summarize(results []result) {
	type key struct {
		latency time.Duration
		rate    int
		name    string
	}
	var keys []key
	by := map[key][]result{}
	for _, r := range results {
		k := key{r.latency, r.rate, r.name}
		if by[k] == nil {
			keys = append(keys, k)
		}
		by[k] = append(by[k], r)
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		if a.latency != b.latency {
			return int(a.latency - b.latency)
		}
		if a.rate != b.rate {
			return a.rate - b.rate
		}
		return strings.Compare(a.name, b.name)
	})
	stat := func(rs []result, f func(result) float64, format string) string {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		med := v[len(v)/2]
		if len(v)%2 == 0 {
			med = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return fmt.Sprintf(format+" ("+format+"-"+format+")", med, v[0], v[len(v)-1])
	}
	fmt.Println("# summary: median (min-max) over the runs")
	for _, k := range keys {
		rs := by[k]
		fmt.Printf("SUMMARY latency=%v rate=%d bin=%s runs=%d p50_s=%s p90_s=%s p99_s=%s log_cpu=%s witness_cpu=%s witness_req_per_s=%s\n",
			k.latency, k.rate, k.name, len(rs),
			stat(rs, func(r result) float64 { return r.p50 }, "%.3f"),
			stat(rs, func(r result) float64 { return r.p90 }, "%.3f"),
			stat(rs, func(r result) float64 { return r.p99 }, "%.3f"),
			stat(rs, func(r result) float64 { return r.logCPU }, "%.2f"),
			stat(rs, func(r result) float64 { return r.witnessCPU }, "%.3f"),
			stat(rs, func(r result) float64 { return r.witnessReqs }, "%.1f"))
	}
}

type setup struct {
	bin     string
	dir     string
	latency time.Duration
	procs   []*exec.Cmd
	proxies []*http.Server
	logURL  string
	policy  *checkpoint.Policy
}

func setUp(bin string, latency time.Duration, logFlags []string) *setup {
	dir, err := os.MkdirTemp("", "tidemark-bench-receipt-")
	if err != nil {
		fatalf("%v", err)
	}
	s := &setup{bin: bin, dir: dir, latency: latency}
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
	running = append(running, cmd)
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
	running = nil
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
// latencies of those sent after the warmup, with the CPU time the log and
// the witnesses used meanwhile and the witness requests the log made.
func (s *setup) run(rate int, warmup, duration time.Duration) result {
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
	var cpu0 []float64
	var reqs0 float64
	measuring := false
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) {
			break
		}
		if !measuring && !at.Before(measureFrom) {
			measuring = true
			cpu0, reqs0 = s.procCPU(), s.witnessRequests()
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
	cpu1, reqs1 := s.procCPU(), s.witnessRequests()
	measured := time.Since(measureFrom).Seconds()
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
	res := result{latency: s.latency, rate: rate, ok: errs == 0 && bad == 0}
	res.p50, _ = strconv.ParseFloat(q(0.50), 64)
	res.p90, _ = strconv.ParseFloat(q(0.90), 64)
	res.p99, _ = strconv.ParseFloat(q(0.99), 64)
	if len(cpu0) == len(s.procs) && len(cpu1) == len(s.procs) {
		for i := range s.procs {
			d := (cpu1[i] - cpu0[i]) / measured
			if i == len(s.procs)-1 {
				res.logCPU = d // the log is started last
			} else {
				res.witnessCPU += d
			}
		}
	}
	res.witnessReqs = (reqs1 - reqs0) / measured / float64(len(s.procs)-1)
	fmt.Printf("RESULT latency=%v rate=%d sent_per_s=%.0f ok=%d errors=%d p50_s=%s p90_s=%s p99_s=%s max_s=%s receipts_verified=%d receipts_bad=%d log_cpu=%.2f witness_cpu=%.3f witness_req_per_s=%.1f\n",
		s.latency, rate, achieved, len(lat), errs, q(0.50), q(0.90), q(0.99), q(1.0-1e-9), verified, bad, res.logCPU, res.witnessCPU, res.witnessReqs)
	if errs > 0 {
		for _, smp := range samples {
			if smp.err != nil || smp.status != 200 {
				fmt.Printf("# first error: status %d err %v body %s\n", smp.status, smp.err, bytes.TrimSpace(smp.body))
				break
			}
		}
	}
	return res
}

// procCPU returns the CPU seconds (user and system) each process of the
// setup has used so far, in the order they were started; nil if one of
// them cannot be read.
func (s *setup) procCPU() []float64 {
	var out []float64
	for _, p := range s.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Process.Pid))
		if err != nil {
			return nil
		}
		// Fields after the command name (in parentheses): utime and stime
		// are the 14th and 15th fields of the line.
		_, rest, ok := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 {
			return nil
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out = append(out, (ut+st)/clockTicks)
	}
	return out
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// 100 on every Linux this runs on.
const clockTicks = 100

// witnessRequests returns the add-checkpoint requests the log has made to
// all its witnesses so far (tidemark_log_witness_requests_total, every
// outcome but skipped_down).
func (s *setup) witnessRequests() float64 {
	resp, err := http.Get(s.logURL + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var n float64
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "tidemark_log_witness_requests_total{") || strings.Contains(l, `outcome="skipped_down"`) {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i >= 0 {
			v, _ := strconv.ParseFloat(l[i+1:], 64)
			n += v
		}
	}
	return n
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
			strings.HasPrefix(l, "tidemark_log_witness_quorum_failures_total ") || strings.HasPrefix(l, "tidemark_log_witness_requests_total{") ||
			strings.HasPrefix(l, "tidemark_log_witness_quorum_seconds_") && !strings.Contains(l, "_bucket") ||
			strings.HasPrefix(l, "tidemark_log_witnessed_delay_seconds_") && !strings.Contains(l, "_bucket") ||
			strings.HasPrefix(l, "tidemark_log_receipt_wait_seconds_") && !strings.Contains(l, "_bucket") {
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

// running are the processes of the current setup, stopped by fatalf so
// that a failed setup leaves nothing behind.
var running []*exec.Cmd

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "receipt bench: "+format+"\n", args...)
	for _, c := range running {
		c.Process.Kill()
		c.Wait()
	}
	os.Exit(1)
}
