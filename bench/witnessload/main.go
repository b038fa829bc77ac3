// Command witnessload measures `tidemark witness` under add-checkpoint load:
// it makes N log keys and a logs/v0 list of them, starts the witness binary
// on a fresh data directory, preloads every log into its state (one
// checkpoint each), then has concurrent clients post checkpoints that each
// advance one log by one entry with a valid consistency proof, and prints
// requests/s and latency percentiles. Every request body is signed before
// the clock starts, so the clients' signing is not measured.
//
// With --base, it measures two binaries with the same signed requests,
// alternated base, new, new, base, ... (ABBA) for --runs runs each, each run
// on a fresh data directory, and prints both medians: a before/after on a
// shared, noisy machine. --profile writes a CPU profile of the witness (the
// first run of --tidemark) from its /debug/pprof/. The clients speak just
// enough HTTP/1.1 (--client lean), since they share the witness's cores;
// --client net/http uses Go's client, as the figures before issue 13 did.
// Each run also prints the witness's CPU per request (from its metrics) and
// this program's.
//
//	go run ./bench/witnessload --tidemark PATH [--logs 40000] [--clients 64] [--requests 100000]
//	go run ./bench/witnessload --tidemark NEW --base OLD --runs 3
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	tidemark := flag.String("tidemark", "", "path of the tidemark binary (required)")
	base := flag.String("base", "", "path of a second tidemark binary, the baseline, run alternately with --tidemark (ABBA)")
	runs := flag.Int("runs", 1, "runs of each binary")
	client := flag.String("client", "lean", "HTTP client of the load: lean (a minimal HTTP/1.1 client, to leave the cores to the witness) or net/http")
	nLogs := flag.Int("logs", 40000, "logs in the list and in the state")
	clients := flag.Int("clients", 64, "concurrent clients (each waits for its answer)")
	requests := flag.Int("requests", 100000, "measured add-checkpoint requests, each advancing one log by one entry")
	dataDir := flag.String("data", "", "witness data directory (default: a new temporary directory, removed after)")
	extra := flag.String("witness-flags", "", "more `tidemark witness` flags, space-separated")
	profile := flag.String("profile", "", "write a CPU profile of the witness under the measured load to this file (from /debug/pprof/ on an --admin-listen of its own)")
	profileSeconds := flag.Int("profile-seconds", 10, "length of the --profile, from the start of the measured load")
	flag.Parse()
	if *client != "lean" && *client != "net/http" {
		fmt.Fprintln(os.Stderr, "witnessload: --client is lean or net/http")
		os.Exit(2)
	}
	if *tidemark == "" {
		fmt.Fprintln(os.Stderr, "witnessload: --tidemark PATH is required")
		os.Exit(2)
	}
	if err := run(*tidemark, *base, *client, *runs, *nLogs, *clients, *requests, *dataDir, *extra, *profile, *profileSeconds); err != nil {
		fmt.Fprintln(os.Stderr, "witnessload:", err)
		os.Exit(1)
	}
}

type benchLog struct {
	origin string
	vkey   string
	signer note.Signer
}

func run(bin, base, client string, runs, nLogs, clients, requests int, dataDir, extra, profile string, profileSeconds int) error {
	tmp, err := os.MkdirTemp("", "witnessload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if dataDir == "" {
		dataDir = filepath.Join(tmp, "witness")
	}

	// One tree, shared by every log (each under its own key and origin):
	// the witness's work per request does not depend on the entries.
	steps := requests/nLogs + 2
	tree := testonly.New(rfc6962.DefaultHasher)
	for i := 0; i <= steps+1; i++ {
		tree.AppendData([]byte(fmt.Sprint("entry ", i)))
	}
	proofs := make([]string, steps+2) // proofs[k]: from size k to k+1, as body lines
	for k := 1; k <= steps; k++ {
		p, err := tree.ConsistencyProof(uint64(k), uint64(k+1))
		if err != nil {
			return err
		}
		for _, h := range p {
			proofs[k] += base64.StdEncoding.EncodeToString(h) + "\n"
		}
	}

	start := time.Now()
	logs := make([]benchLog, nLogs)
	parallel(nLogs, func(i int) {
		origin := fmt.Sprintf("bench.example/log%05d", i)
		skey, vkey, err := checkpoint.GenerateLogKey(origin)
		if err != nil {
			panic(err)
		}
		s, err := checkpoint.NewLogSigner(skey)
		if err != nil {
			panic(err)
		}
		logs[i] = benchLog{origin, vkey, s}
	})
	list := &strings.Builder{}
	list.WriteString("logs/v0\n")
	for _, l := range logs {
		// A qpd far above the test's rate: the limits are charged but never bind.
		fmt.Fprintf(list, "vkey %s\nqpd 864000000\ncontact bench\n", l.vkey)
	}
	logsFile := filepath.Join(tmp, "logs")
	if err := os.WriteFile(logsFile, []byte(list.String()), 0o644); err != nil {
		return err
	}
	sign := func(l benchLog, old, size uint64) []byte {
		signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: l.origin, Size: size, Hash: tree.HashAt(size)}, l.signer)
		if err != nil {
			panic(err)
		}
		var proof string
		if old > 0 {
			proof = proofs[old]
		}
		return fmt.Appendf(nil, "old %d\n%s\n%s", old, proof, signed)
	}
	preload := make([][]byte, nLogs)
	parallel(nLogs, func(i int) { preload[i] = sign(logs[i], 0, 1) })
	// Request j advances log j mod N from size s to s+1, s = 1 + j / N: the
	// requests for one log are N apart, so they never race each other.
	load := make([][]byte, requests)
	parallel(requests, func(j int) {
		s := uint64(1 + j/nLogs)
		load[j] = sign(logs[j%nLogs], s, s+1)
	})
	fmt.Printf("prepared %d keys and %d signed requests in %v\n", nLogs, nLogs+requests, time.Since(start).Round(time.Millisecond))

	// The schedule: base, new, new, base, ... so that drift in the
	// machine's load falls on both alike.
	type binary struct{ label, path string }
	order := []binary{{"new", bin}}
	if base != "" {
		order = nil
		for i := 0; i < 2*runs; i++ {
			if i%4 == 0 || i%4 == 3 {
				order = append(order, binary{"base", base})
			} else {
				order = append(order, binary{"new", bin})
			}
		}
	} else {
		for i := 1; i < runs; i++ {
			order = append(order, binary{"new", bin})
		}
	}
	rates, cpus := map[string][]float64{}, map[string][]float64{}
	for i, b := range order {
		dir := dataDir
		if len(order) > 1 {
			dir = filepath.Join(dataDir, fmt.Sprintf("run%d", i+1))
			fmt.Printf("== run %d of %d: %s (%s)\n", i+1, len(order), b.label, b.path)
		}
		prof := ""
		if b.label == "new" && len(rates["new"]) == 0 {
			prof = profile
		}
		rate, cpu, err := runOne(b.path, b.label, client, dir, filepath.Join(tmp, fmt.Sprintf("witness%d.out", i+1)), logsFile, extra, prof, profileSeconds, nLogs, clients, requests, preload, load)
		if err != nil {
			return err
		}
		if len(order) > 1 {
			os.RemoveAll(dir)
		}
		rates[b.label] = append(rates[b.label], rate)
		cpus[b.label] = append(cpus[b.label], cpu)
	}
	if base != "" {
		n, o := median(rates["new"]), median(rates["base"])
		fmt.Printf("MEDIAN witness_add_checkpoint new=%.0f base=%.0f ratio=%.3f new_runs=%s base_runs=%s cpu_us_new=%.0f cpu_us_base=%.0f\n",
			n, o, n/o, join(rates["new"]), join(rates["base"]), median(cpus["new"]), median(cpus["base"]))
	} else if len(order) > 1 {
		fmt.Printf("MEDIAN witness_add_checkpoint new=%.0f new_runs=%s cpu_us_new=%.0f\n", median(rates["new"]), join(rates["new"]), median(cpus["new"]))
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func join(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, ",")
}

// runOne starts the witness binary bin on a fresh data directory, preloads
// every log, measures the load and stops the witness. It returns the rate.
func runOne(bin, label, client, dataDir, outFile, logsFile, extra, profile string, profileSeconds, nLogs, clients, requests int, preload, load [][]byte) (rate, cpuUS float64, err error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, 0, err
	}
	args := []string{"witness", "--data", dataDir, "--logs", logsFile, "--listen", addr, "--max-qps", "-1", "--log-level", "warn"}
	url := "http://" + addr
	adminURL := url
	if profile != "" {
		// The profiler is only on an admin listener of its own.
		admin, err := freeAddr()
		if err != nil {
			return 0, 0, err
		}
		args = append(args, "--admin-listen", admin)
		adminURL = "http://" + admin
	}
	if extra != "" {
		args = append(args, strings.Fields(extra)...)
	}
	fmt.Printf("witness: %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	wout, _ := os.Create(outFile)
	cmd.Stdout, cmd.Stderr = wout, wout
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: clients * 2, MaxIdleConnsPerHost: clients * 2}, Timeout: time.Minute}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := hc.Get(adminURL + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(outFile)
			return 0, 0, fmt.Errorf("witness did not start:\n%s", b)
		}
	}

	newPoster := func() poster { return &leanPoster{addr: addr} }
	if client == "net/http" {
		newPoster = func() poster { return netHTTPPoster{hc, url} }
	}
	pre := hammer(newPoster, preload, clients)
	fmt.Printf("preload: %d logs into the state: %s\n", nLogs, pre)
	if pre.errors > 0 {
		return 0, 0, fmt.Errorf("preload had %d failures: %v", pre.errors, pre.statuses)
	}
	m0 := scrape(hc, adminURL)
	var profiled chan error
	if profile != "" {
		profiled = make(chan error, 1)
		go func() { profiled <- fetchProfile(adminURL, profileSeconds, profile) }()
	}
	ru0 := rusage()
	res := hammer(newPoster, load, clients)
	ru1 := rusage()
	m1 := scrape(hc, adminURL)
	if profiled != nil {
		if err := <-profiled; err != nil {
			return 0, 0, fmt.Errorf("profile: %w", err)
		}
		fmt.Printf("profile: %d s of the load in %s\n", profileSeconds, profile)
	}
	fmt.Printf("load:    %s\n", res)
	batches := m1["tidemark_witness_commit_batch_size_count"] - m0["tidemark_witness_commit_batch_size_count"]
	writes := m1["tidemark_witness_commit_batch_size_sum"] - m0["tidemark_witness_commit_batch_size_sum"]
	commitS := m1["tidemark_witness_commit_seconds_sum"] - m0["tidemark_witness_commit_seconds_sum"]
	if batches > 0 {
		fmt.Printf("group commit: %.0f transactions for %.0f writes (%.1f writes per fsync), %.2f ms per transaction\n",
			batches, writes, writes/batches, 1000*commitS/batches)
	}
	// CPU per request, less noisy than the rate on a shared machine.
	wcpu := m1["process_cpu_seconds_total"] - m0["process_cpu_seconds_total"]
	fmt.Printf("cpu: witness %.0f us/request, this load generator %.0f us/request\n",
		1e6*wcpu/float64(requests), 1e6*(ru1-ru0).Seconds()/float64(requests))
	fmt.Printf("RESULT witness_add_checkpoint binary=%s logs=%d clients=%d requests=%d rate=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d fsync_batch=%.1f\n",
		label, nLogs, clients, requests, res.rate, ms(res.p50), ms(res.p99), res.errors, writes/math.Max(batches, 1))
	if res.errors > 0 {
		return 0, 0, fmt.Errorf("%d requests failed: %v", res.errors, res.statuses)
	}
	return res.rate, 1e6 * wcpu / float64(requests), nil
}

type result struct {
	n, errors     int
	statuses      map[int]int
	rate          float64
	p50, p99, max time.Duration
	elapsed       time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("%d requests in %v: %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, statuses %v",
		r.n, r.elapsed.Round(time.Millisecond), r.rate, ms(r.p50), ms(r.p99), ms(r.max), r.statuses)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// hammer posts every body once from clients concurrent clients, each waiting
// for its answer before the next, each with its own poster.
func hammer(newPoster func() poster, bodies [][]byte, clients int) result {
	var next atomic.Int64
	lat := make([]time.Duration, len(bodies))
	codes := make([]int, len(bodies))
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPoster()
			defer p.close()
			for {
				j := int(next.Add(1) - 1)
				if j >= len(bodies) {
					return
				}
				t0 := time.Now()
				code, err := p.post(bodies[j])
				if err != nil {
					codes[j] = -1
					continue
				}
				lat[j] = time.Since(t0)
				codes[j] = code
			}
		}()
	}
	wg.Wait()
	r := result{n: len(bodies), statuses: map[int]int{}, elapsed: time.Since(start)}
	for _, c := range codes {
		r.statuses[c]++
		if c != 200 {
			r.errors++
		}
	}
	slices.Sort(lat)
	r.rate = float64(len(bodies)) / r.elapsed.Seconds()
	r.p50 = lat[len(lat)/2]
	r.p99 = lat[len(lat)*99/100]
	r.max = lat[len(lat)-1]
	return r
}

// A poster posts add-checkpoint requests, one at a time, and returns the
// status of each.
type poster interface {
	post(body []byte) (int, error)
	close()
}

// netHTTPPoster posts with net/http's client.
type netHTTPPoster struct {
	hc  *http.Client
	url string
}

func (p netHTTPPoster) post(body []byte) (int, error) {
	resp, err := p.hc.Post(p.url+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (netHTTPPoster) close() {}

// leanPoster speaks just enough HTTP/1.1 on one kept-alive connection to post
// a request and read a response with a Content-Length, as the witness sends:
// it costs a fraction of net/http's client (its goroutines and hand-offs),
// which shares the witness's cores in this benchmark.
type leanPoster struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	buf  []byte
}

func (p *leanPoster) close() {
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

func (p *leanPoster) post(body []byte) (int, error) {
	if p.conn == nil {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			return 0, err
		}
		p.conn, p.br = c, bufio.NewReader(c)
	}
	p.buf = append(p.buf[:0], "POST /add-checkpoint HTTP/1.1\r\nHost: "...)
	p.buf = append(p.buf, p.addr...)
	p.buf = append(p.buf, "\r\nContent-Type: text/plain\r\nContent-Length: "...)
	p.buf = strconv.AppendInt(p.buf, int64(len(body)), 10)
	p.buf = append(p.buf, "\r\n\r\n"...)
	p.buf = append(p.buf, body...)
	if _, err := p.conn.Write(p.buf); err != nil {
		p.close()
		return 0, err
	}
	code, err := p.response()
	if err != nil {
		p.close()
	}
	return code, err
}

// response reads one response and returns its status.
func (p *leanPoster) response() (int, error) {
	line, err := p.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("status line %q", line)
	}
	length, closing := -1, false
	for {
		h, err := p.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, val, _ := bytes.Cut(h, []byte(":"))
		val = bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(val)); err != nil {
				return 0, fmt.Errorf("Content-Length %q", val)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(val, []byte("close")):
			closing = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, fmt.Errorf("Transfer-Encoding %q: only Content-Length is read", val)
		}
	}
	if length < 0 {
		return 0, errors.New("response without Content-Length")
	}
	if _, err := p.br.Discard(length); err != nil {
		return 0, err
	}
	if closing {
		p.close()
	}
	return code, nil
}

// fetchProfile writes a CPU profile of seconds from the witness's admin
// listener to path.
func fetchProfile(adminURL string, seconds int, path string) error {
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", adminURL, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rusage is this process's CPU time so far (user and system).
func rusage() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scrape reads the witness's unlabelled metrics.
func scrape(hc *http.Client, url string) map[string]float64 {
	m := map[string]float64{}
	resp, err := hc.Get(url + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m
}

func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	workers := runtime.NumCPU()
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
