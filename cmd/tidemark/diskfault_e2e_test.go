package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/tidemark/tidemark/internal/testmount"
	"io"
	"io/fs"
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
)

// Disk faults under the real binary: a log whose disk fills up or turns
// read-only under keyed load, and a witness whose disk fills up. The
// mounts are in mounts_test.go.

// keyedLoad is clients posting events to a log, each with its own
// Idempotency-Key, retrying an event with the same key until it is
// answered 200, as a careful sender does.
type keyedLoad struct {
	url     string
	dataDir string // must not show in any answer
	event   func(key string) []byte

	mu       sync.Mutex // guards the fields below
	acked    map[string]uint64
	sent     map[string][]byte
	refused  int            // 503s
	messages map[string]int // the 503s' error messages, counted
	bad      []string       // any other answer, or a 503 that breaks the rules
	stopped  bool

	// gate is held for reading by each request, so that holding it for
	// writing pauses the load with no request in flight.
	gate sync.RWMutex
	wg   sync.WaitGroup
}

// pause waits for the requests in flight and holds new ones until resume.
func (l *keyedLoad) pause()  { l.gate.Lock() }
func (l *keyedLoad) resume() { l.gate.Unlock() }

func startKeyedLoad(url, dataDir string, clients int, event func(key string) []byte) *keyedLoad {
	l := &keyedLoad{url: url, dataDir: dataDir, event: event, acked: map[string]uint64{}, sent: map[string][]byte{}, messages: map[string]int{}}
	for c := 0; c < clients; c++ {
		l.wg.Add(1)
		go l.client(c)
	}
	return l
}

func (l *keyedLoad) client(c int) {
	defer l.wg.Done()
	for i := 0; ; i++ {
		key := fmt.Sprintf("c%d-e%d", c, i)
		ev := l.event(key)
		l.mu.Lock()
		l.sent[key] = ev
		l.mu.Unlock()
		for !l.isStopped() {
			if l.post(key, ev) {
				break
			}
			time.Sleep(10 * time.Millisecond) // the client's back-off, shorter than Retry-After to keep the test short
		}
		if l.isStopped() {
			return
		}
	}
}

func (l *keyedLoad) isStopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// post sends one event and records the answer; true when it was acked.
// The request is not cancelled when the load stops: an answer in flight is
// read and recorded.
func (l *keyedLoad) post(key string, ev []byte) bool {
	l.gate.RLock()
	defer l.gate.RUnlock()
	req, _ := http.NewRequest(http.MethodPost, l.url+"/v1/events", bytes.NewReader(ev))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.fail(fmt.Sprintf("%s: %v", key, err))
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
		return true
	case resp.StatusCode == 503:
		l.refused++
		l.messages[r.Error]++
		if resp.Header.Get("Retry-After") == "" {
			l.bad = append(l.bad, fmt.Sprintf("%s: 503 without Retry-After: %s", key, body))
		}
		if strings.Contains(string(body), l.dataDir) || strings.Contains(string(body), "tile/") || strings.Contains(string(body), ".state") {
			l.bad = append(l.bad, fmt.Sprintf("%s: 503 with a path: %s", key, body))
		}
		return false
	}
	l.bad = append(l.bad, fmt.Sprintf("%s: %d %s", key, resp.StatusCode, body))
	return false
}

func (l *keyedLoad) fail(s string) {
	l.mu.Lock()
	l.bad = append(l.bad, s)
	l.mu.Unlock()
}

// stop stops the clients and waits for the requests in flight.
func (l *keyedLoad) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *keyedLoad) counts() (acked, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked), l.refused
}

// retryUnacked posts, once more, each event whose key was sent but never
// acked, until each is acked (the clients' retries after the fault).
func (l *keyedLoad) retryUnacked(t *testing.T) int {
	t.Helper()
	l.mu.Lock()
	var keys []string
	for k := range l.sent {
		if _, ok := l.acked[k]; !ok {
			keys = append(keys, k)
		}
	}
	l.mu.Unlock()
	for _, k := range keys {
		for deadline := time.Now().Add(time.Minute); !l.post(k, l.sent[k]); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				l.mu.Lock()
				defer l.mu.Unlock()
				t.Fatalf("%s is still refused a minute after the fault was cleared; last: %s", k, l.bad[len(l.bad)-1])
			}
		}
	}
	return len(keys)
}

// checkAcked reads the log from dir once its checkpoint covers every acked
// index: each acked index holds the event that was acked, under its key,
// and no key is in the log twice.
func (l *keyedLoad) checkAcked(t *testing.T, logURL, dir string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var want uint64
	for _, idx := range l.acked {
		want = max(want, idx+1)
	}
	waitFor(t, time.Minute, fmt.Sprintf("a checkpoint covering all %d acked entries", len(l.acked)), func() bool {
		return publishedSize(t, logURL) >= want
	})
	leaves := readLeaves(t, dir)
	seen := map[string]int{}
	for i, b := range leaves {
		leaf, err := checkpoint.ParseLeaf(b)
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if prev, ok := seen[leaf.IdempotencyKey]; ok {
			t.Errorf("key %s is in the log twice, at %d and %d", leaf.IdempotencyKey, prev, i)
		}
		seen[leaf.IdempotencyKey] = i
	}
	lost := 0
	for key, idx := range l.acked {
		if idx >= uint64(len(leaves)) {
			lost++
			t.Errorf("%s was acked as %d, beyond the log's %d entries", key, idx, len(leaves))
			continue
		}
		leaf, _ := checkpoint.ParseLeaf(leaves[idx])
		if leaf.IdempotencyKey != key || !bytes.Equal(leaf.Event, l.sent[key]) {
			lost++
			t.Errorf("%s was acked as %d, which holds key %q and event %.80s", key, idx, leaf.IdempotencyKey, leaf.Event)
		}
	}
	t.Logf("log of %d entries: %d acked entries checked, %d lost", len(leaves), len(l.acked), lost)
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
	}
}

// canonicalTile matches the files tlog-tiles names, relative to the data
// directory.
var canonicalTile = regexp.MustCompile(`^tile/(entries|[0-9]+)/(x[0-9]{3}/)*[0-9]{3}(\.p/([1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5]))?$`)

// strayFiles lists the files in a log's data directory that neither
// Tessera nor the log puts there on purpose: the temporary files a failed
// write leaves behind.
func strayFiles(t *testing.T, dir string) []string {
	t.Helper()
	known := map[string]bool{"checkpoint": true, "log.key": true, "log.pub": true,
		".state/treeState": true, ".state/treeState.lock": true, ".state/gcState": true, ".state/gcState.lock": true,
		".state/publish.lock": true, ".state/version": true}
	var strays []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed while walking
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel == ".tidemark" {
				return filepath.SkipDir // the log's own state: SQLite and the write probe
			}
			return nil
		}
		if !known[rel] && !canonicalTile.MatchString(rel) {
			strays = append(strays, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strays
}

// fsckLog checks the log with Tessera's fsck, when TIDEMARK_TOOLS names it.
func fsckLog(t *testing.T, logURL, pubFile string) {
	t.Helper()
	tools := os.Getenv("TIDEMARK_TOOLS")
	if tools == "" {
		if os.Getenv("CI") == "true" {
			t.Error("CI=true and TIDEMARK_TOOLS is not set: fsck did not run")
		} else {
			t.Log("fsck not run: TIDEMARK_TOOLS is not set (`make test` sets it)")
		}
		return
	}
	out, err := exec.Command(filepath.Join(tools, "fsck"), "--storage_url", logURL+"/",
		"--public_key", pubFile, "--N", "2", "--qps=0", "--ui=false", "--logtostderr").CombinedOutput()
	m := regexp.MustCompile(`Successfully fsck'd log with size (\d+)`).FindSubmatch(out)
	if err != nil || m == nil || bytes.Contains(out, []byte("fsck failed")) {
		t.Fatalf("fsck did not verify the log (%v):\n%s", err, tail(out, 30))
	}
	t.Logf("fsck: %s", m[0])
}

// getText GETs a URL and returns its status and body.
func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// requireAlive fails the test, with the server's last words, if the
// server no longer answers.
func requireAlive(t *testing.T, p *logProcess) {
	t.Helper()
	resp, err := http.Get(p.url() + "/healthz")
	if err == nil {
		resp.Body.Close()
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	t.Fatalf("the server stopped answering (%v):\n%s", err, tail(p.out.Bytes(), 40))
}

// stopAnyhow stops a server with SIGTERM and waits, whatever its exit
// status (after a disk fault the log reports what it could not save), and
// checks it did not panic.
func stopAnyhow(t *testing.T, p *logProcess) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("stopped: %v; last lines:\n%s", err, tail(p.out.Bytes(), 3))
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-done
		t.Fatalf("the server did not stop within a minute of SIGTERM:\n%s", tail(p.out.Bytes(), 20))
	}
	if bytes.Contains(p.out.Bytes(), []byte("panic:")) {
		t.Fatalf("the server panicked:\n%s", tail(p.out.Bytes(), 40))
	}
}

// bigEvent is a 3 KB event in canonical JSON (members in order, compact),
// so the leaf holds exactly these bytes.
func bigEvent(key string) []byte {
	return []byte(`{"action":"disk.test","details":"` + strings.Repeat("x", 3000) + `","id":"` + key + `"}`)
}

// TestLogOnFullDisk fills the log's disk under keyed load: every failed
// request gets 503 with Retry-After and no path, the log stays ready for
// reads and says why it takes no writes, Tessera's stray temporary files
// are removed, and when space returns the refused events are taken without
// a restart; every acked event is in the log where it was acked, and fsck
// passes.
func TestLogOnFullDisk(t *testing.T) {
	mnt := testmount.Tmpfs(t, 6<<10)
	dir := filepath.Join(mnt, "log")
	lp := startLog(t, dir)
	pub := filepath.Join(t.TempDir(), "log.pub")
	if err := os.WriteFile(pub, []byte(readFile(t, filepath.Join(dir, "log.pub"))), 0o644); err != nil {
		t.Fatal(err)
	}
	load := startKeyedLoad(lp.url(), dir, 6, bigEvent)
	peak := 0
	waitFor(t, 2*time.Minute, "300 requests refused for a full disk", func() bool {
		peak = max(peak, len(strayFiles(t, dir)))
		_, refused := load.counts()
		return refused >= 300
	})
	ackedFull, refusedFull := load.counts()
	if code, body := getText(t, lp.url()+"/readyz"); code != 200 || !strings.Contains(body, "not taking writes: the log's disk is full") {
		t.Errorf("/readyz on a full disk: %d %q", code, body)
	}
	if v := metricValue(t, lp.url(), `tidemark_log_disk_fault{kind="full"}`); v != 1 {
		t.Errorf("tidemark_log_disk_fault{kind=\"full\"} = %v on a full disk", v)
	}
	if v := metricValue(t, lp.url(), `tidemark_log_storage_errors_total{kind="full"}`); v < 300 {
		t.Errorf("tidemark_log_storage_errors_total{kind=\"full\"} = %v after %d refusals", v, refusedFull)
	}

	// Space returns: the log takes writes again, by itself.
	testmount.ResizeTmpfs(t, mnt, 64<<10)
	waitFor(t, time.Minute, "50 more events acked after space returned", func() bool {
		acked, _ := load.counts()
		return acked >= ackedFull+50
	})
	load.stop()
	retried := load.retryUnacked(t)
	if code, body := getText(t, lp.url()+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz once space returned: %d %q", code, body)
	}
	waitFor(t, time.Minute, "the stray temporary files to be removed", func() bool {
		return len(strayFiles(t, dir)) == 0
	})
	if v := metricValue(t, lp.url(), "tidemark_log_stray_temp_files_removed_total"); v == 0 && peak > 0 {
		t.Errorf("strays went away but the log did not count removing them")
	}
	acked, refused := load.counts()
	load.mu.Lock()
	t.Logf("acked %d before the disk filled and %d in all; %d refused with 503 (%v); peak %d stray files, 0 after; %d events retried after",
		ackedFull, acked, refused, load.messages, peak, retried)
	for _, b := range load.bad {
		t.Error(b)
	}
	load.mu.Unlock()
	load.checkAcked(t, lp.url(), dir)
	fsckLog(t, lp.url(), pub)
	stopAnyhow(t, lp)
}

// TestLogOnReadOnlyDisk turns the log's file system read-only (ext4
// errors=remount-ro, as after an I/O error) under keyed load: the log does
// not die (Tessera v1.0.4 panics when it cannot open its lock file), every
// failed request gets 503 with Retry-After and no path, and once the file
// system is writable again (in place if the kernel allows it, else after a
// file system check and a restart) the refused events are taken; every
// acked event is in the log where it was acked, and fsck passes.
func TestLogOnReadOnlyDisk(t *testing.T) {
	disk := testmount.Ext4(t, 32)
	dir := filepath.Join(disk.Dir, "log")
	lp := startLog(t, dir)
	// The verifier key file is written without fsync: keep a copy off the
	// disk that is about to fail.
	pub := filepath.Join(t.TempDir(), "log.pub")
	if err := os.WriteFile(pub, []byte(readFile(t, filepath.Join(dir, "log.pub"))), 0o644); err != nil {
		t.Fatal(err)
	}
	smallEvent := func(key string) []byte { return []byte(`{"action":"disk.readonly","id":"` + key + `"}`) }
	load := startKeyedLoad(lp.url(), dir, 6, smallEvent)
	waitFor(t, time.Minute, "100 events acked", func() bool {
		acked, _ := load.counts()
		return acked >= 100
	})
	// The file system turns read-only between two requests, not during
	// one: Tessera v1.0.4 panics if it happens in the moment between the
	// log's check and Tessera's opening its lock file (see
	// log/appendqueue.go), which under this load is about a batch age (1 ms)
	// of every few milliseconds. The load goes on at once.
	load.pause()
	disk.FailAndGoReadOnly(t)
	load.resume()
	ackedBefore, _ := load.counts()
	waitFor(t, time.Minute, "300 requests refused for a read-only disk", func() bool {
		requireAlive(t, lp)
		_, refused := load.counts()
		return refused >= 300
	})
	if code, body := getText(t, lp.url()+"/readyz"); code != 200 || !strings.Contains(body, "not taking writes: the log's disk is read-only") {
		t.Errorf("/readyz on a read-only disk: %d %q", code, body)
	}
	load.stop()
	acked, refused := load.counts()
	load.mu.Lock()
	t.Logf("acked %d before the file system turned read-only, %d in all; %d refused with 503 (%v)", ackedBefore, acked, refused, load.messages)
	for _, b := range load.bad {
		t.Error(b)
	}
	load.bad = nil
	load.mu.Unlock()

	if disk.RemountReadWrite(t) {
		t.Log("the file system is writable again in place: the log goes on without a restart")
	} else {
		t.Log("the kernel keeps the file system read-only until it is checked: stop, e2fsck, start again")
		stopAnyhow(t, lp)
		disk.Repair(t)
		lp = startLog(t, dir)
		load.url = lp.url()
	}
	retried := load.retryUnacked(t)
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("after-%d", i)
		load.mu.Lock()
		load.sent[key] = smallEvent(key)
		load.mu.Unlock()
		if !load.post(key, smallEvent(key)) {
			t.Fatalf("%s refused after recovery: %s", key, load.bad[len(load.bad)-1])
		}
	}
	t.Logf("%d events retried after recovery", retried)
	waitFor(t, time.Minute, "the stray temporary files to be removed", func() bool {
		return len(strayFiles(t, dir)) == 0
	})
	load.checkAcked(t, lp.url(), dir)
	fsckLog(t, lp.url(), pub)
	stopAnyhow(t, lp)
}

// TestWitnessOnFullDisk fills the witness's disk while a log pushes
// checkpoints: no 200 without durable state (each refusal is a 503 with
// Retry-After and no path, and the state stays at the last checkpoint
// cosigned), and when space returns the witness cosigns again without a
// restart; a restart then shows the state was durable.
func TestWitnessOnFullDisk(t *testing.T) {
	mnt := testmount.Tmpfs(t, 8<<10)
	data := filepath.Join(mnt, "witness")
	l := newE2ELog(t, "e2e.test/fullwitness", 5000)
	logsFile := filepath.Join(t.TempDir(), "logs")
	if err := os.WriteFile(logsFile, []byte("logs/v0\nvkey "+l.vkey+"\nqpd 86400000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wp := startWitness(t, data, "--logs", logsFile, "--max-qps", "-1")
	stateURL := wp.url() + "/" + hexSHA256(l.origin) + "/checkpoint"
	storedSize := func() uint64 {
		code, body := getText(t, stateURL)
		if code == 404 {
			return 0
		}
		lines := strings.SplitN(body, "\n", 3)
		n, err := strconv.ParseUint(lines[1], 10, 64)
		if code != 200 || err != nil {
			t.Fatalf("GET %s: %d %q", stateURL, code, body)
		}
		return n
	}
	var cosigned uint64 // the size of the last checkpoint answered 200
	push := func(size uint64) (int, string, http.Header) {
		resp, err := http.Post(wp.url()+"/add-checkpoint", "text/plain", strings.NewReader(l.request(t, 0, cosigned, size)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 {
			cosigned = size
		}
		return resp.StatusCode, string(b), resp.Header
	}
	for size := uint64(1); size <= 20; size++ {
		if code, body, _ := push(size); code != 200 {
			t.Fatalf("size %d before the disk filled: %d %q", size, code, body)
		}
	}
	filler := testmount.Fill(t, mnt)
	refused, acceptedFull := 0, 0
	for size := cosigned + 1; refused < 20; size = cosigned + 1 {
		if size >= 5000 {
			t.Fatalf("the witness cosigned up to %d on a full disk and never refused", cosigned)
		}
		before := cosigned
		code, body, h := push(size)
		switch code {
		case 200:
			acceptedFull++ // SQLite reused WAL space it already had: durable
		case 503:
			refused++
			if h.Get("Retry-After") == "" || !strings.Contains(body, "disk is full") || strings.Contains(body, mnt) || strings.Contains(body, "—") {
				t.Errorf("size %d on a full disk: 503 %q, Retry-After %q", size, body, h.Get("Retry-After"))
			}
			if got := storedSize(); got != before {
				t.Fatalf("after a refused checkpoint the witness holds size %d, want %d", got, before)
			}
		default:
			t.Fatalf("size %d on a full disk: %d %q", size, code, body)
		}
	}
	t.Logf("full disk: %d checkpoints cosigned (WAL space SQLite already had), then %d refused with 503; state stayed at %d", acceptedFull, refused, cosigned)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	target := cosigned + 10
	for size := cosigned + 1; size <= target; size++ {
		if code, body, _ := push(size); code != 200 {
			t.Fatalf("size %d after space returned: %d %q", size, code, body)
		}
	}
	if got := storedSize(); got != target {
		t.Errorf("after space returned the witness holds %d, want %d", got, target)
	}
	wp.stop(t, syscall.SIGTERM)
	wp = startWitness(t, data, "--logs", logsFile, "--max-qps", "-1")
	stateURL = wp.url() + "/" + hexSHA256(l.origin) + "/checkpoint"
	if got := storedSize(); got != target {
		t.Errorf("after a restart the witness holds %d, want %d", got, target)
	}
	wp.stop(t, syscall.SIGTERM)
}

// hexSHA256 is how the witness's monitoring endpoint names an origin.
func hexSHA256(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestWitnessOnReadOnlyDisk turns the witness's file system read-only
// while a log pushes checkpoints: each refusal is a 503 with Retry-After,
// the state stays at the last checkpoint cosigned, and after a file system
// check and a restart it is still there and the witness cosigns again.
func TestWitnessOnReadOnlyDisk(t *testing.T) {
	disk := testmount.Ext4(t, 16)
	data := filepath.Join(disk.Dir, "witness")
	l := newE2ELog(t, "e2e.test/rowitness", 100)
	logsFile := filepath.Join(t.TempDir(), "logs")
	if err := os.WriteFile(logsFile, []byte("logs/v0\nvkey "+l.vkey+"\nqpd 86400000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wp := startWitness(t, data, "--logs", logsFile, "--max-qps", "-1")
	var cosigned uint64
	push := func(size uint64) (int, string, http.Header) {
		resp, err := http.Post(wp.url()+"/add-checkpoint", "text/plain", strings.NewReader(l.request(t, 0, cosigned, size)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 {
			cosigned = size
		}
		return resp.StatusCode, string(b), resp.Header
	}
	stored := func() string {
		_, body := getText(t, wp.url()+"/"+hexSHA256(l.origin)+"/checkpoint")
		return strings.SplitN(body, "\n", 3)[1]
	}
	for size := uint64(1); size <= 10; size++ {
		if code, body, _ := push(size); code != 200 {
			t.Fatalf("size %d: %d %q", size, code, body)
		}
	}
	disk.FailAndGoReadOnly(t)
	for size := uint64(11); size <= 20; size++ {
		code, body, h := push(size)
		if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "read-only") || strings.Contains(body, disk.Dir) {
			t.Fatalf("size %d on a read-only disk: %d %q, Retry-After %q", size, code, body, h.Get("Retry-After"))
		}
		if got := stored(); got != "10" {
			t.Fatalf("after a refused checkpoint the witness holds size %s, want 10", got)
		}
	}
	if !disk.RemountReadWrite(t) {
		stopAnyhow(t, wp)
		disk.Repair(t)
		wp = startWitness(t, data, "--logs", logsFile, "--max-qps", "-1")
	}
	if got := stored(); got != "10" {
		t.Errorf("after recovery the witness holds size %s, want 10", got)
	}
	if code, body, _ := push(11); code != 200 {
		t.Errorf("after recovery: %d %q", code, body)
	}
	t.Logf("read-only disk: 10 checkpoints cosigned, then 10 refused with 503; state stayed at 10 through a file system check and a restart; cosigned again after")
	stopAnyhow(t, wp)
}
