package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
	_ "modernc.org/sqlite"
)

// startWitness starts `tidemark witness` on dir and waits for /healthz.
func startWitness(t *testing.T, dir string, extra ...string) *logProcess {
	t.Helper()
	return startServer(t, "witness", append([]string{"--data", dir, "--name", "e2e.test/witness"}, extra...))
}

// e2eLog is a log in the test's memory: a key and two trees that share
// their first forkAt entries, so checkpoints of one conflict with the other.
type e2eLog struct {
	origin string
	signer note.Signer
	vkey   string
	trees  [2]*testonly.Tree
}

const forkAt = 10

func newE2ELog(t *testing.T, origin string, size int) *e2eLog {
	skey, vkey, err := checkpoint.GenerateLogKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := checkpoint.NewLogSigner(skey)
	l := &e2eLog{origin: origin, signer: s, vkey: vkey}
	for b := range l.trees {
		l.trees[b] = testonly.New(rfc6962.DefaultHasher)
		for i := 0; i < size; i++ {
			tag := "main"
			if i >= forkAt {
				tag = fmt.Sprint("branch", b)
			}
			l.trees[b].AppendData([]byte(fmt.Sprintf("%s %d", tag, i)))
		}
	}
	return l
}

// branchOf says which tree a root at size belongs to: -1 for both (the
// shared prefix), 0 or 1, or -2 for neither.
func (l *e2eLog) branchOf(size uint64, root []byte) int {
	a, b := bytes.Equal(l.trees[0].HashAt(size), root), bytes.Equal(l.trees[1].HashAt(size), root)
	switch {
	case a && b:
		return -1
	case a:
		return 0
	case b:
		return 1
	}
	return -2
}

func (l *e2eLog) request(t *testing.T, branch int, old, size uint64) string {
	tree := l.trees[branch]
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: l.origin, Size: size, Hash: tree.HashAt(size)}, l.signer)
	if err != nil {
		t.Error(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "old %d\n", old)
	if old > 0 && old < size {
		p, err := tree.ConsistencyProof(old, size)
		if err != nil {
			t.Error(err)
		}
		for _, h := range p {
			b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
		}
	}
	b.WriteString("\n")
	b.Write(signed)
	return b.String()
}

// TestKilledWitnessNeverRollsBackOrForks kills the witness with SIGKILL at
// random moments while several clients push checkpoints of several logs,
// some from a conflicting branch of each log, and restarts it each time.
// Across every 200 any client received: a request sent after a 200 for size
// S of a log never gets a 200 for a smaller size (no rollback, across
// crashes), every cosignature verifies, and no two cosigned checkpoints of a
// log are from conflicting branches.
func TestKilledWitnessNeverRollsBackOrForks(t *testing.T) {
	killWitnessUnderLoad(t, 4, 6, 5, false)
}

// TestKilledWitnessGroupCommitNeverRollsBackOrForks is the same with many logs and
// clients, so that the writes of many requests share each transaction
// (group commit) when the witness is killed: every 200 answered must survive
// it, whichever transaction held it.
func TestKilledWitnessGroupCommitNeverRollsBackOrForks(t *testing.T) {
	killWitnessUnderLoad(t, 48, 32, 4, true)
}

// killWitnessUnderLoad runs the kill test with nLogs logs and clients
// clients, killing the witness rounds times. With wantBatches, the last
// round's metrics must show transactions of more than one write.
func killWitnessUnderLoad(t *testing.T, nLogs, clients, rounds int, wantBatches bool) {
	dir := t.TempDir()
	const treeSize = 4000
	logs := make([]*e2eLog, nLogs)
	list := "logs/v0\n"
	for i := range logs {
		logs[i] = newE2ELog(t, fmt.Sprintf("e2e.test/log%d", i), treeSize)
		list += "vkey " + logs[i].vkey + "\nqpd 86400000\n"
	}
	logsFile := filepath.Join(t.TempDir(), "logs")
	os.WriteFile(logsFile, []byte(list), 0o644)

	type cosigned struct {
		size uint64
		root []byte
		line string
	}
	var (
		mu       sync.Mutex
		acked    = make([]uint64, nLogs)     // the largest size answered 200, per log
		received = make([][]cosigned, nLogs) // every 200, per log
		total    int
	)
	data := filepath.Join(dir, "witness")
	var vkey string
	for round := 0; round <= rounds; round++ {
		wp := startWitness(t, data, "--logs", logsFile, "--max-qps", "-1")
		if vkey == "" {
			vkey = strings.TrimSpace(readFile(t, filepath.Join(data, "witness.pub")))
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(c)))
				belief := make([]uint64, nLogs)
				for ctx.Err() == nil {
					i := rng.IntN(nLogs)
					l := logs[i]
					branch := 0
					if rng.IntN(5) == 0 {
						branch = 1
					}
					size := min(belief[i]+1+uint64(rng.IntN(4)), treeSize)
					mu.Lock()
					before := acked[i]
					mu.Unlock()
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, wp.url()+"/add-checkpoint", strings.NewReader(l.request(t, branch, belief[i], size)))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						continue // killed under us
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						continue
					}
					switch resp.StatusCode {
					case 200:
						root := l.trees[branch].HashAt(size)
						mu.Lock()
						if size < before {
							t.Errorf("log %d: 200 for size %d to a request sent after a 200 for size %d: rolled back", i, size, before)
						}
						acked[i] = max(acked[i], size)
						received[i] = append(received[i], cosigned{size, root, string(body)})
						total++
						mu.Unlock()
						belief[i] = size
					case 409:
						if resp.Header.Get("Content-Type") == "text/x.tlog.size" {
							n, err := strconv.ParseUint(strings.TrimSuffix(string(body), "\n"), 10, 64)
							if err != nil {
								t.Errorf("409 body %q", body)
							}
							belief[i] = n
						}
					case 422:
					default:
						t.Errorf("status %d: %s", resp.StatusCode, body)
					}
					if belief[i] >= treeSize {
						belief[i] = 0 // this log is done: its requests only get 409s now
					}
				}
			}()
		}
		if round < rounds {
			time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
			wp.stop(t, syscall.SIGKILL)
			cancel()
			wg.Wait()
			continue
		}
		time.Sleep(500 * time.Millisecond)
		cancel()
		wg.Wait()

		// The running witness: its settings, and what it serves.
		m := get(t, wp.url()+"/metrics")
		if !strings.Contains(m, `tidemark_witness_sqlite_settings{journal_mode="wal",synchronous="2"} 1`) {
			t.Errorf("the witness does not report WAL and synchronous=FULL")
		}
		if wantBatches {
			single := metricValue(t, wp.url(), `tidemark_witness_commit_batch_size_bucket{le="1"}`)
			all := metricValue(t, wp.url(), "tidemark_witness_commit_batch_size_count")
			if !(single < all) {
				t.Errorf("%v of %v transactions carried one write: group commit was not exercised", single, all)
			}
			t.Logf("last round: %v transactions, %v of one write", all, single)
		}
		for i, l := range logs {
			h := sha256.Sum256([]byte(l.origin))
			served := get(t, wp.url()+"/"+hex.EncodeToString(h[:])+"/checkpoint")
			lv, _ := checkpoint.NewLogVerifier(l.vkey)
			c, _, err := checkpoint.Open([]byte(served), lv)
			if err != nil {
				t.Fatalf("served checkpoint of log %d: %v", i, err)
			}
			if c.Size < acked[i] {
				t.Errorf("log %d: serves size %d after answering 200 for %d", i, c.Size, acked[i])
			}
		}
		wp.stop(t, syscall.SIGTERM)
	}

	wv, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range logs {
		branches := map[int]uint64{}
		for _, c := range received[i] {
			signed, _ := checkpoint.Sign(checkpoint.Checkpoint{Origin: l.origin, Size: c.size, Hash: c.root}, l.signer)
			if _, err := note.Open(append(signed, c.line...), note.VerifierList(wv)); err != nil {
				t.Errorf("log %d: cosignature for size %d does not verify: %v", i, c.size, err)
			}
			if b := l.branchOf(c.size, c.root); b >= 0 {
				branches[b] = max(branches[b], c.size)
			}
		}
		if len(branches) > 1 {
			t.Errorf("log %d: cosigned checkpoints from both branches (largest sizes %v): a fork", i, branches)
		}
	}
	if total < 50 {
		t.Errorf("only %d checkpoints cosigned in all: the test did not exercise much", total)
	}
	t.Logf("%d cosignatures across %d kills; largest sizes %v", total, rounds, acked)

	// The database file, read by SQLite itself: WAL is persistent.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "witness.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q (%v), want wal", mode, err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

func TestWitnessIdentityOnTheCommandLine(t *testing.T) {
	dir := t.TempDir()
	_, lvkey, _ := checkpoint.GenerateLogKey("e2e.test/log")
	logsFile := filepath.Join(dir, "logs")
	os.WriteFile(logsFile, []byte("logs/v0\nvkey "+lvkey+"\nqpd 86400\n"), 0o644)
	data := filepath.Join(dir, "w")
	wp := startWitness(t, data, "--logs", logsFile)
	wp.stop(t, syscall.SIGTERM)
	vkey := strings.TrimSpace(readFile(t, filepath.Join(data, "witness.pub")))
	if !strings.Contains(wp.out.String(), "verifier key: "+vkey) {
		t.Errorf("first start did not print the verifier key:\n%s", wp.out)
	}
	os.Remove(filepath.Join(data, "witness.db"))
	os.Remove(filepath.Join(data, "witness.db-wal"))
	os.Remove(filepath.Join(data, "witness.db-shm"))
	out, code := run(t, dir, "witness", "--data", data, "--logs", logsFile, "--listen", freeAddr(t))
	if code != 1 || !strings.Contains(out, "--init") {
		t.Errorf("a key without state: exit %d\n%s", code, out)
	}
	wp = startWitness(t, data, "--logs", logsFile, "--init")
	wp.stop(t, syscall.SIGTERM)
	if _, code := run(t, dir, "witness", "--data", data); code != 2 {
		t.Errorf("no --logs: exit %d, want 2", code)
	}
}
