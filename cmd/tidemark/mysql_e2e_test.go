package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/testmysql"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// Logs on MySQL under the real binary: several `tidemark log --mysql`
// processes on one database, as behind a load balancer, each with its own
// --data and the same --key.

// mysqlLog is a log on one MySQL database and the frontends serving it.
type mysqlLog struct {
	dsn     string
	keyFile string
	pubFile string // the verifier key, for fsck
	vkey    string
	dirs    []string
	fe      []*logProcess
}

// startMySQLLog makes a key with `tidemark keygen`, a database of its own,
// and starts n frontends on them, one after the other (the first creates
// the tables).
func startMySQLLog(t *testing.T, n int) *mysqlLog {
	t.Helper()
	l := &mysqlLog{dsn: testmysql.New(t)}
	keyDir := t.TempDir()
	prefix := filepath.Join(keyDir, "log")
	if out, err := exec.Command(tidemarkBin, "keygen", "e2e.test/mysql", "--out", prefix).CombinedOutput(); err != nil {
		t.Fatalf("tidemark keygen: %v\n%s", err, out)
	}
	l.keyFile, l.pubFile = prefix+".key", prefix+".pub"
	l.vkey = strings.TrimSpace(readFile(t, l.pubFile))
	for range n {
		dir := t.TempDir()
		l.dirs = append(l.dirs, dir)
		l.fe = append(l.fe, l.start(t, dir))
	}
	return l
}

func (l *mysqlLog) start(t *testing.T, dir string) *logProcess {
	t.Helper()
	return startServer(t, "log", []string{"--mysql", l.dsn, "--data", dir, "--key", l.keyFile})
}

// checkpointSize is the size of the checkpoint a frontend serves, checked
// against the log's key.
func checkpointSize(t *testing.T, url, vkey string) uint64 {
	t.Helper()
	code, body := getText(t, url+"/checkpoint")
	if code != 200 {
		t.Fatalf("GET %s/checkpoint: %d %q", url, code, body)
	}
	v, err := checkpoint.NewLogVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := checkpoint.Open([]byte(body), v)
	if err != nil {
		t.Fatalf("the checkpoint of %s does not verify: %v\n%s", url, err, body)
	}
	return cp.Size
}

// readLeavesHTTP reads every leaf of a log through its read API, up to the
// size of the checkpoint it serves.
func readLeavesHTTP(t *testing.T, url string) [][]byte {
	t.Helper()
	size := publishedSize(t, url)
	var out [][]byte
	for i := uint64(0); i*layout.EntryBundleWidth < size; i++ {
		p := layout.PartialTileSize(0, i, size)
		code, body := getText(t, url+"/"+layout.EntriesPath(i, p))
		if code != 200 {
			t.Fatalf("GET %s: %d %.200s", layout.EntriesPath(i, p), code, body)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText([]byte(body)); err != nil {
			t.Fatalf("entry bundle %d: %v", i, err)
		}
		out = append(out, b.Entries...)
	}
	if uint64(len(out)) < size {
		t.Fatalf("the entry bundles hold %d entries, the checkpoint %d", len(out), size)
	}
	return out[:size]
}

// TestThreeFrontendsOneDatabaseHammerAndFsck runs Tessera's hammer against
// three frontends of one MySQL log at once, then Tessera's fsck through
// each frontend's read API: programs we did not write.
func TestThreeFrontendsOneDatabaseHammerAndFsck(t *testing.T) {
	tools := os.Getenv("TIDEMARK_TOOLS")
	if tools == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and TIDEMARK_TOOLS is not set: run `make test`, which installs Tessera's hammer and fsck")
		}
		t.Skip("TIDEMARK_TOOLS is not set: run `make test`, which installs Tessera's hammer and fsck")
	}
	l := startMySQLLog(t, 3)

	const goal = 4000
	args := []string{"--log_url", l.fe[0].url() + "/", "--log_public_key", l.vkey,
		"--num_writers=64", "--max_write_ops=1000000", "--dup_chance=0.1",
		"--max_read_ops=0", "--num_readers_random=0", "--num_readers_full=0",
		"--leaf_write_goal=" + strconv.Itoa(goal), "--max_runtime=30s", "--show_ui=false", "--logtostderr", "--v=2"}
	for _, fe := range l.fe {
		args = append(args, "--write_log_url", fe.url()+"/")
	}
	began := time.Now()
	out, err := exec.Command(filepath.Join(tools, "hammer"), args...).CombinedOutput()
	ran := time.Since(began)
	if err != nil {
		t.Fatalf("hammer failed: %v\n%s", err, tail(out, 40))
	}
	reached := regexp.MustCompile(`Reached tree size goal of (\d+) after (\S+);`).FindSubmatch(out)
	if reached == nil {
		t.Fatalf("hammer exited 0 without reaching its goal:\n%s", tail(out, 40))
	}
	target, _ := strconv.ParseUint(string(reached[1]), 10, 64)
	elapsed, _ := time.ParseDuration(string(reached[2]))
	// Every index the hammer was answered (-v=2 logs each one).
	written := map[uint64]int{}
	for _, m := range regexp.MustCompile(`Wrote leaf at index (\d+)`).FindAllSubmatch(out, -1) {
		idx, _ := strconv.ParseUint(string(m[1]), 10, 64)
		written[idx]++
	}
	writes := 0
	for _, n := range written {
		writes += n
	}
	t.Logf("hammer: goal %d reached after %v (it looks once a second), exited after %v; %d writes answered (%.0f/s through 3 frontends), %d distinct indices",
		target, elapsed, ran.Round(time.Millisecond), writes, float64(writes)/ran.Seconds(), len(written))
	if target < goal || len(written) < goal*8/10 {
		t.Errorf("hammer reached %d with %d distinct indices answered, want a goal of at least %d and most of them answered", target, len(written), goal)
	}

	// Every frontend serves the same signed tree, covering every index the
	// hammer was answered.
	var maxIdx uint64
	for idx := range written {
		maxIdx = max(maxIdx, idx)
	}
	var sizes []uint64
	waitFor(t, 30*time.Second, "the three frontends to serve one tree size covering every answered index", func() bool {
		sizes = sizes[:0]
		for _, fe := range l.fe {
			sizes = append(sizes, checkpointSize(t, fe.url(), l.vkey))
		}
		return sizes[0] > maxIdx && sizes[0] >= target && sizes[1] == sizes[0] && sizes[2] == sizes[0]
	})
	t.Logf("tree size served by each frontend: %v", sizes)
	if uint64(len(written)) > sizes[0] {
		t.Errorf("the hammer was answered %d distinct indices, the tree holds %d", len(written), sizes[0])
	}
	for i, fe := range l.fe {
		code, body := getText(t, fe.url()+"/readyz")
		if code != 200 {
			t.Errorf("frontend %d /readyz: %d %q", i, code, body)
		}
		if bytes.Contains(fe.out.Bytes(), []byte("panic:")) {
			t.Errorf("frontend %d panicked:\n%s", i, tail(fe.out.Bytes(), 40))
		}
	}
	for i, fe := range l.fe {
		t.Logf("fsck through frontend %d:", i)
		fsckLog(t, fe.url(), l.pubFile)
	}
	for _, fe := range l.fe {
		stopAnyhow(t, fe)
	}
}

// multiLoad is keyed load spread over several frontends: each client sends
// its events in turn, each with a unique id (and, for half the clients,
// the same Idempotency-Key), and retries an event with the same key on the
// next live frontend until it is answered 200, as a sender behind a load
// balancer does.
type multiLoad struct {
	urls []string

	mu    sync.Mutex // guards the fields below
	down  map[string]bool
	acked map[string]uint64
	sent  map[string][]byte
	// header: the event was sent with an Idempotency-Key (its id).
	header map[string]bool
	// firstFail is when an event's first attempt failed, for the events
	// whose request reached a frontend that then died.
	firstFail map[string]time.Time
	waited    map[string]time.Duration // those events: first failure to ack
	statuses  map[string]int           // non-200 answers and errors, counted
	bad       []string
	stopped   bool
	wg        sync.WaitGroup
}

func startMultiLoad(urls []string, clients int) *multiLoad {
	l := &multiLoad{urls: urls, down: map[string]bool{}, acked: map[string]uint64{}, sent: map[string][]byte{}, header: map[string]bool{},
		firstFail: map[string]time.Time{}, waited: map[string]time.Duration{}, statuses: map[string]int{}}
	for c := range clients {
		l.wg.Add(1)
		go l.client(c)
	}
	return l
}

func multiEvent(key string) []byte {
	return []byte(`{"action":"mysql.kill","id":"` + key + `"}`)
}

func (l *multiLoad) client(c int) {
	defer l.wg.Done()
	withHeader := c%2 == 0
	for i, attempt := 0, 0; ; i++ {
		key := fmt.Sprintf("c%d-e%d", c, i)
		ev := multiEvent(key)
		l.mu.Lock()
		l.sent[key] = ev
		l.header[key] = withHeader
		l.mu.Unlock()
		for ; ; attempt++ {
			url, ok := l.pick(c + attempt)
			if !ok {
				return
			}
			if l.post(url, key, ev, withHeader) {
				break
			}
			time.Sleep(10 * time.Millisecond) // shorter than Retry-After, to keep the test short
		}
		if l.isStopped() {
			return
		}
	}
}

// pick is the n-th frontend, skipping those known down; false once the
// load is stopped.
func (l *multiLoad) pick(n int) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return "", false
	}
	for i := range l.urls {
		if u := l.urls[(n+i)%len(l.urls)]; !l.down[u] {
			return u, true
		}
	}
	return "", false
}

func (l *multiLoad) isStopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// markDown takes a frontend out of the rotation, before it is killed.
func (l *multiLoad) markDown(url string) {
	l.mu.Lock()
	l.down[url] = true
	l.mu.Unlock()
}

func (l *multiLoad) post(url, key string, ev []byte, withHeader bool) bool {
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/events", bytes.NewReader(ev))
	req.Header.Set("Content-Type", "application/json")
	if withHeader {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.down[url] {
			l.statuses["error from the killed frontend"]++
			if _, ok := l.firstFail[key]; !ok {
				l.firstFail[key] = time.Now()
			}
		} else {
			l.bad = append(l.bad, fmt.Sprintf("%s to %s: %v", key, url, err))
		}
		return false
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var r struct {
		Index *uint64
		Error string
	}
	_ = json.Unmarshal(body, &r)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case resp.StatusCode == 200 && r.Index != nil:
		if prev, ok := l.acked[key]; ok && prev != *r.Index {
			l.bad = append(l.bad, fmt.Sprintf("%s acked as %d and as %d", key, prev, *r.Index))
		}
		l.acked[key] = *r.Index
		if t0, ok := l.firstFail[key]; ok {
			l.waited[key] = time.Since(t0)
		}
		return true
	case resp.StatusCode == 503:
		l.statuses["503 "+r.Error]++
		if resp.Header.Get("Retry-After") == "" {
			l.bad = append(l.bad, fmt.Sprintf("%s: 503 without Retry-After: %s", key, body))
		}
		return false
	}
	l.statuses[fmt.Sprintf("%d %s", resp.StatusCode, r.Error)]++
	l.bad = append(l.bad, fmt.Sprintf("%s to %s: %d %s", key, url, resp.StatusCode, body))
	return false
}

func (l *multiLoad) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *multiLoad) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// pendingAfterKill is how many events whose request reached the killed
// frontend are not acked yet.
func (l *multiLoad) pendingAfterKill() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k := range l.firstFail {
		if _, ok := l.acked[k]; !ok {
			n++
		}
	}
	return n
}

// checkLeaves reads the log through url: every acked index holds the event
// acked there, and no id (nor Idempotency-Key) is in the log twice.
func (l *multiLoad) checkLeaves(t *testing.T, url string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var want uint64
	for _, idx := range l.acked {
		want = max(want, idx+1)
	}
	waitFor(t, time.Minute, fmt.Sprintf("a checkpoint covering all %d acked entries", len(l.acked)), func() bool {
		return publishedSize(t, url) >= want
	})
	leaves := readLeavesHTTP(t, url)
	ids, keys := map[string]int{}, map[string]int{}
	for i, b := range leaves {
		leaf, err := checkpoint.ParseLeaf(b)
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		var ev struct{ ID string }
		if err := json.Unmarshal(leaf.Event, &ev); err != nil || ev.ID == "" {
			t.Errorf("leaf %d has no id: %s", i, leaf.Event)
			continue
		}
		if prev, ok := ids[ev.ID]; ok {
			t.Errorf("id %s is in the log twice, at %d and %d", ev.ID, prev, i)
		}
		ids[ev.ID] = i
		if leaf.IdempotencyKey != "" {
			if prev, ok := keys[leaf.IdempotencyKey]; ok {
				t.Errorf("Idempotency-Key %s is in the log twice, at %d and %d", leaf.IdempotencyKey, prev, i)
			}
			keys[leaf.IdempotencyKey] = i
		}
	}
	lost := 0
	for key, idx := range l.acked {
		if idx >= uint64(len(leaves)) {
			lost++
			t.Errorf("%s was acked as %d, beyond the log's %d entries", key, idx, len(leaves))
			continue
		}
		leaf, _ := checkpoint.ParseLeaf(leaves[idx])
		if !bytes.Equal(leaf.Event, l.sent[key]) {
			lost++
			t.Errorf("%s was acked as %d, which holds %.80s", key, idx, leaf.Event)
		}
	}
	t.Logf("log of %d entries read through %s: %d ids, %d with an Idempotency-Key, each once; %d acked entries checked, %d lost",
		len(leaves), url, len(ids), len(keys), len(l.acked), lost)
}

// TestKillOneFrontendUnderKeyedLoad kills one of three frontends of a
// MySQL log with SIGKILL under keyed load spread over all three. The load
// carries on through the other two; the retries of the requests the dead
// one had in flight go to them, and are answered once its lease has run
// out and recovery resolved its claims. Every acked event is in the log
// at its index, no id is in it twice, fsck passes, and the killed
// frontend starts again on its own --data.
func TestKillOneFrontendUnderKeyedLoad(t *testing.T) {
	l := startMySQLLog(t, 3)
	urls := []string{l.fe[0].url(), l.fe[1].url(), l.fe[2].url()}
	load := startMultiLoad(urls, 24)
	waitFor(t, time.Minute, "300 events acked", func() bool { return load.ackedCount() >= 300 })

	victim := l.fe[1]
	load.markDown(victim.url())
	victim.stop(t, syscall.SIGKILL)
	killed := time.Now()
	ackedAtKill := load.ackedCount()

	waitFor(t, time.Minute, "300 more events acked after the kill", func() bool {
		return load.ackedCount() >= ackedAtKill+300
	})
	tookMore := time.Since(killed)
	// The events the dead frontend had in flight: their retries wait for
	// its lease (15 s) and recovery.
	waitFor(t, time.Minute, "every event sent to the killed frontend to be acked elsewhere", func() bool {
		return load.pendingAfterKill() == 0
	})
	load.stop()
	stoppedAfter := time.Since(killed)
	acked := load.ackedCount()

	load.mu.Lock()
	var waits []time.Duration
	for _, d := range load.waited {
		waits = append(waits, d)
	}
	slices.Sort(waits)
	t.Logf("acked %d before the kill, %d in all: the next 300 within %v of the kill, %d until the load stopped %v after it; answers other than 200: %v",
		ackedAtKill, acked, tookMore.Round(10*time.Millisecond), acked-ackedAtKill, stoppedAfter.Round(10*time.Millisecond), load.statuses)
	if len(waits) > 0 {
		t.Logf("%d events had a request on the killed frontend; their retries were acked after %v (shortest) to %v (longest)",
			len(waits), waits[0].Round(10*time.Millisecond), waits[len(waits)-1].Round(10*time.Millisecond))
	} else {
		t.Logf("no request was in flight to the killed frontend")
	}
	for _, b := range load.bad {
		t.Error(b)
	}
	load.mu.Unlock()
	for _, i := range []int{0, 2} {
		if m := regexp.MustCompile(`[^\n]*recovered the idempotency claims[^\n]*`).Find(l.fe[i].out.Bytes()); m != nil {
			t.Logf("frontend %d: %s", i, m)
		}
	}
	if acked <= ackedAtKill {
		t.Errorf("no event was acked after the kill (%d before, %d in all)", ackedAtKill, acked)
	}

	load.checkLeaves(t, l.fe[0].url())
	fsckLog(t, l.fe[2].url(), l.pubFile)

	// The killed frontend starts again on its own --data and the same
	// database: it answers retries of old events with their first index,
	// from any frontend's keys, and takes new ones.
	restarted := l.start(t, l.dirs[1])
	l.fe[1] = restarted
	load.mu.Lock()
	old := 0
	for key, idx := range load.acked {
		if old == 50 {
			break
		}
		old++
		ev, withHeader := load.sent[key], load.header[key]
		load.mu.Unlock()
		if !load.post(restarted.url(), key, ev, withHeader) {
			load.mu.Lock()
			t.Fatalf("retry of %s on the restarted frontend was refused: %v", key, load.bad)
		}
		load.mu.Lock()
		if got := load.acked[key]; got != idx {
			t.Errorf("retry of %s on the restarted frontend answered %d, first %d", key, got, idx)
		}
	}
	load.mu.Unlock()
	for i := range 20 {
		key := fmt.Sprintf("restart-%d", i)
		load.mu.Lock()
		load.sent[key] = multiEvent(key)
		load.mu.Unlock()
		if !load.post(restarted.url(), key, multiEvent(key), true) {
			t.Fatalf("%s refused by the restarted frontend: %v", key, load.bad)
		}
	}
	load.checkLeaves(t, restarted.url())
	fsckLog(t, restarted.url(), l.pubFile)
	for _, i := range []int{0, 1, 2} {
		stopAnyhow(t, l.fe[i])
	}
}
