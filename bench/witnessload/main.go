// Command witnessload measures `tidemark witness` under add-checkpoint load:
// it makes N log keys and a logs/v0 list of them, starts the witness binary
// on a fresh data directory, preloads every log into its state (one
// checkpoint each), then has concurrent clients post checkpoints that each
// advance one log by one entry with a valid consistency proof, and prints
// requests/s and latency percentiles. Every request body is signed before
// the clock starts, so the clients' signing is not measured.
//
//	go run ./bench/witnessload --tidemark PATH [--logs 40000] [--clients 64] [--requests 100000]
package main

import (
	"bufio"
	"encoding/base64"
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
	nLogs := flag.Int("logs", 40000, "logs in the list and in the state")
	clients := flag.Int("clients", 64, "concurrent clients (each waits for its answer)")
	requests := flag.Int("requests", 100000, "measured add-checkpoint requests, each advancing one log by one entry")
	dataDir := flag.String("data", "", "witness data directory (default: a new temporary directory, removed after)")
	extra := flag.String("witness-flags", "", "more `tidemark witness` flags, space-separated")
	flag.Parse()
	if *tidemark == "" {
		fmt.Fprintln(os.Stderr, "witnessload: --tidemark PATH is required")
		os.Exit(2)
	}
	if err := run(*tidemark, *nLogs, *clients, *requests, *dataDir, *extra); err != nil {
		fmt.Fprintln(os.Stderr, "witnessload:", err)
		os.Exit(1)
	}
}

type benchLog struct {
	origin string
	vkey   string
	signer note.Signer
}

func run(bin string, nLogs, clients, requests int, dataDir, extra string) error {
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

	addr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"witness", "--data", dataDir, "--logs", logsFile, "--listen", addr, "--max-qps", "-1", "--log-level", "warn"}
	if extra != "" {
		args = append(args, strings.Fields(extra)...)
	}
	fmt.Printf("witness: %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	wout, _ := os.Create(filepath.Join(tmp, "witness.out"))
	cmd.Stdout, cmd.Stderr = wout, wout
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	url := "http://" + addr
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: clients * 2, MaxIdleConnsPerHost: clients * 2}, Timeout: time.Minute}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := hc.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(tmp, "witness.out"))
			return fmt.Errorf("witness did not start:\n%s", b)
		}
	}

	pre := hammer(hc, url, preload, clients)
	fmt.Printf("preload: %d logs into the state: %s\n", nLogs, pre)
	if pre.errors > 0 {
		return fmt.Errorf("preload had %d failures: %v", pre.errors, pre.statuses)
	}
	m0 := scrape(hc, url)
	res := hammer(hc, url, load, clients)
	m1 := scrape(hc, url)
	fmt.Printf("load:    %s\n", res)
	batches := m1["tidemark_witness_commit_batch_size_count"] - m0["tidemark_witness_commit_batch_size_count"]
	writes := m1["tidemark_witness_commit_batch_size_sum"] - m0["tidemark_witness_commit_batch_size_sum"]
	commitS := m1["tidemark_witness_commit_seconds_sum"] - m0["tidemark_witness_commit_seconds_sum"]
	if batches > 0 {
		fmt.Printf("group commit: %.0f transactions for %.0f writes (%.1f writes per fsync), %.2f ms per transaction\n",
			batches, writes, writes/batches, 1000*commitS/batches)
	}
	fmt.Printf("RESULT witness_add_checkpoint logs=%d clients=%d requests=%d rate=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d fsync_batch=%.1f\n",
		nLogs, clients, requests, res.rate, ms(res.p50), ms(res.p99), res.errors, writes/math.Max(batches, 1))
	if res.errors > 0 {
		return fmt.Errorf("%d requests failed: %v", res.errors, res.statuses)
	}
	return nil
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
// for its answer before the next.
func hammer(hc *http.Client, url string, bodies [][]byte, clients int) result {
	var next atomic.Int64
	lat := make([]time.Duration, len(bodies))
	codes := make([]int, len(bodies))
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1) - 1)
				if j >= len(bodies) {
					return
				}
				t0 := time.Now()
				resp, err := hc.Post(url+"/add-checkpoint", "text/plain", strings.NewReader(string(bodies[j])))
				if err != nil {
					codes[j] = -1
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[j] = time.Since(t0)
				codes[j] = resp.StatusCode
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
