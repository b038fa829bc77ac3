package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// These tests drive the real tidemark binary, built once for the package.
var tidemarkBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tidemark-e2e")
	if err != nil {
		panic(err)
	}
	tidemarkBin = filepath.Join(dir, "tidemark")
	if out, err := exec.Command("go", "build", "-o", tidemarkBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "couldn't build tidemark: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// logProcess is a `tidemark log` child process.
type logProcess struct {
	cmd  *exec.Cmd
	addr string
	out  *bytes.Buffer
}

func startLog(t *testing.T, dir string, extra ...string) *logProcess {
	t.Helper()
	return startServer(t, "log", append([]string{"--data", dir, "--origin", "e2e.test/log"}, extra...))
}

// startServer starts `tidemark SUBCOMMAND ARGS --listen ADDR` on a free
// loopback address, kills it when the test ends, and waits for /healthz.
func startServer(t *testing.T, subcommand string, args []string) *logProcess {
	t.Helper()
	return startServerEnv(t, nil, subcommand, args)
}

// startServerEnv is startServer with more environment variables
// ("NAME=VALUE").
func startServerEnv(t *testing.T, env []string, subcommand string, args []string) *logProcess {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(tidemarkBin, append(append([]string{subcommand}, args...), "--listen", addr)...)
	cmd.Env = append(os.Environ(), env...)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &logProcess{cmd: cmd, addr: addr, out: out}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return p
		}
	}
	t.Fatalf("tidemark %s did not start:\n%s", subcommand, out)
	return nil
}

func (p *logProcess) url() string { return "http://" + p.addr }

func (p *logProcess) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	err := p.cmd.Wait()
	if sig == syscall.SIGTERM && err != nil {
		t.Fatalf("tidemark log exited with %v after SIGTERM:\n%s", err, p.out)
	}
}

// TestHammerAndFsck writes to the log with Tessera's own load tester and
// checks the result with Tessera's own checker: programs we did not write.
// Install them with `make tools`; the test needs TIDEMARK_TOOLS to name the
// directory holding hammer and fsck (v1.0.4).
func TestHammerAndFsck(t *testing.T) {
	tools := os.Getenv("TIDEMARK_TOOLS")
	if tools == "" {
		t.Skip("TIDEMARK_TOOLS is not set: run `make test`, which installs Tessera's hammer and fsck")
	}
	if testing.Short() {
		t.Skip("long: 30,000 entries")
	}
	dir := t.TempDir()
	lp := startLog(t, dir)
	vkey := strings.TrimSpace(readFile(t, filepath.Join(dir, "log.pub")))

	const goal = 30000
	hammer := exec.Command(filepath.Join(tools, "hammer"),
		"--log_url", lp.url()+"/", "--log_public_key", vkey,
		"--num_writers=256", "--max_write_ops=1000000", "--dup_chance=0.1",
		"--max_read_ops=0", "--num_readers_random=0", "--num_readers_full=0",
		"--leaf_write_goal="+strconv.Itoa(goal), "--max_runtime=5m", "--show_ui=false", "--logtostderr")
	out, err := hammer.CombinedOutput()
	if err != nil {
		t.Fatalf("hammer failed: %v\n%s\nlog:\n%s", err, tail(out, 40), tail(lp.out.Bytes(), 20))
	}
	if !bytes.Contains(out, []byte("Reached tree size goal")) {
		t.Fatalf("hammer exited 0 without reaching its goal:\n%s", tail(out, 40))
	}
	t.Logf("hammer: %s", regexp.MustCompile(`Reached tree size goal[^\n]*`).Find(out))

	fsck := exec.Command(filepath.Join(tools, "fsck"), "--storage_url", lp.url()+"/",
		"--public_key", filepath.Join(dir, "log.pub"), "--N", "4", "--qps=0", "--ui=false", "--logtostderr")
	out, err = fsck.CombinedOutput()
	// fsck v1.0.4 exits 0 even when the check fails: read what it says.
	m := regexp.MustCompile(`Successfully fsck'd log with size (\d+)`).FindSubmatch(out)
	if err != nil || m == nil || bytes.Contains(out, []byte("fsck failed")) {
		t.Fatalf("fsck did not verify the log (%v):\n%s", err, tail(out, 40))
	}
	if n, _ := strconv.Atoi(string(m[1])); n < goal {
		t.Errorf("fsck checked a log of size %d, want at least %d", n, goal)
	}
	t.Logf("fsck: %s", m[0])
	lp.stop(t, syscall.SIGTERM)
}

// TestKilledLogKeepsEveryAnsweredIndexAndNeverDuplicatesAKey kills the log
// with SIGKILL while several clients post keyed events, restarts it, and
// retries every event: each key must be in the log exactly once, and every
// index a client was given must hold that client's event.
func TestKilledLogKeepsEveryAnsweredIndexAndNeverDuplicatesAKey(t *testing.T) {
	dir := t.TempDir()
	const clients, perClient = 6, 150
	answered := sync.Map{} // key -> index
	for round := 0; round < 3; round++ {
		lp := startLog(t, dir)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perClient && ctx.Err() == nil; i++ {
					key := fmt.Sprintf("c%d-e%d", c, i)
					idx, err := postKeyed(ctx, lp.url(), key)
					if err != nil {
						continue // the log died under us: the retry comes next round
					}
					if prev, ok := answered.LoadOrStore(key, idx); ok && prev.(uint64) != idx {
						t.Errorf("key %s answered %d, earlier %d", key, idx, prev)
					}
				}
			}()
		}
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		lp.stop(t, syscall.SIGKILL)
		cancel()
		wg.Wait()
	}
	beforeKills := 0
	answered.Range(func(any, any) bool { beforeKills++; return true })
	// Last start: every event again, in full.
	lp := startLog(t, dir)
	for c := 0; c < clients; c++ {
		for i := 0; i < perClient; i++ {
			key := fmt.Sprintf("c%d-e%d", c, i)
			idx, err := postKeyed(context.Background(), lp.url(), key)
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := answered.LoadOrStore(key, idx); ok && prev.(uint64) != idx {
				t.Errorf("after restarts key %s answered %d, before %d", key, idx, prev)
			}
		}
	}
	lp.stop(t, syscall.SIGTERM)

	// Read the log from disk: every key exactly once, where it was answered.
	leaves := readLeaves(t, dir)
	seen := map[string]uint64{}
	for i, b := range leaves {
		l, err := checkpoint.ParseLeaf(b)
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if prev, ok := seen[l.IdempotencyKey]; ok {
			t.Errorf("key %s is in the log twice: %d and %d", l.IdempotencyKey, prev, i)
		}
		seen[l.IdempotencyKey] = uint64(i)
	}
	if len(seen) != clients*perClient {
		t.Errorf("log holds %d keys, want %d", len(seen), clients*perClient)
	}
	lost := 0
	answered.Range(func(k, v any) bool {
		if seen[k.(string)] != v.(uint64) {
			t.Errorf("key %s was answered %d but is at %d", k, v, seen[k.(string)])
			lost++
		}
		return true
	})
	t.Logf("3 SIGKILLs under %d clients: %d events answered before the kills, %d keys in the log, each once; answered entries lost: %d", clients, beforeKills, len(seen), lost)
}

func postKeyed(ctx context.Context, url, key string) (uint64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/events", strings.NewReader(`{"action":"test.kill","id":"`+key+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var r struct{ Index uint64 }
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, err
	}
	return r.Index, nil
}

func readLeaves(t *testing.T, dir string) [][]byte {
	t.Helper()
	cp := readFile(t, filepath.Join(dir, "checkpoint"))
	lines := strings.SplitN(cp, "\n", 3)
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := uint64(0); i*layout.EntryBundleWidth < size; i++ {
		raw, err := os.ReadFile(filepath.Join(dir, layout.EntriesPath(i, layout.PartialTileSize(0, i, size))))
		if err != nil {
			t.Fatal(err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Entries...)
	}
	return out[:size]
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tail(b []byte, n int) string {
	var lines []string
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
