package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
	"github.com/tidemark/tidemark/witness"
)

// e2eWitness is a witness in the test's process, on a fixed address, that
// the test stops and starts again (its key and state persist in dir).
type e2eWitness struct {
	t          *testing.T
	name, dir  string
	addr, logs string
	w          *witness.Witness
	hs         *http.Server
}

func startE2EWitness(t *testing.T, name, logs string) *e2eWitness {
	t.Helper()
	w := &e2eWitness{t: t, name: name, dir: filepath.Join(t.TempDir(), name), addr: freeAddr(t), logs: logs}
	w.start()
	t.Cleanup(w.stop)
	return w
}

func (w *e2eWitness) url() string { return "http://" + w.addr }

func (w *e2eWitness) start() {
	w.t.Helper()
	ww, err := witness.New(context.Background(), witness.Config{
		Dir: w.dir, Name: "e2e.test/" + w.name, LogsFile: w.logs, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	var ln net.Listener
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ln, err = net.Listen("tcp", w.addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		ww.Close()
		w.t.Fatal(err)
	}
	w.w, w.hs = ww, &http.Server{Handler: ww.Handler(true)}
	go w.hs.Serve(ln)
}

func (w *e2eWitness) stop() {
	if w.w == nil {
		return
	}
	w.hs.Close()
	w.w.Close()
	w.w = nil
}

// witnessedLog is a `tidemark log` process with a policy naming in-process
// witnesses.
type witnessedLog struct {
	*logProcess
	dir, policy string
	witnesses   []*e2eWitness
}

// writeLogKey writes a new log key for origin to dir/name.key and returns
// its file and vkey.
func writeLogKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	skey, vkey, err := checkpoint.GenerateLogKey("e2e.test/log")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".key")
	if err := os.WriteFile(path, []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, vkey
}

// writePolicy writes a policy with the log keys, the witnesses and "group g
// K ...; quorum g".
func writePolicy(t *testing.T, path string, logVKeys []string, ws []*e2eWitness, k int) {
	t.Helper()
	var b strings.Builder
	for _, v := range logVKeys {
		b.WriteString("log " + v + "\n")
	}
	var names []string
	for _, w := range ws {
		fmt.Fprintf(&b, "witness %s %s %s\n", w.name, w.w.VKey(), w.url())
		names = append(names, w.name)
	}
	fmt.Fprintf(&b, "group g %d %s\nquorum g\n", k, strings.Join(names, " "))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeWitnessLogs writes the witnesses' logs/v0 list with the log's keys.
func writeWitnessLogs(t *testing.T, path string, vkeys ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("logs/v0\n")
	for _, v := range vkeys {
		b.WriteString("vkey " + v + "\nqpd 10000000\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Witnessing flags for tests: a checkpoint every 200 ms, short timeouts.
var fastWitnessing = []string{"--checkpoint-interval", "200ms", "--republish-interval", "1s", "--witness-timeout", "1s", "--witness-wait-timeout", "3s"}

func startWitnessedLog(t *testing.T, n, k int) *witnessedLog {
	t.Helper()
	return startWitnessedLogWith(t, n, k)
}

// startWitnessedLogWith is startWitnessedLog with more `tidemark log` flags.
func startWitnessedLogWith(t *testing.T, n, k int, extra ...string) *witnessedLog {
	t.Helper()
	dir := t.TempDir()
	keyFile, vkey := writeLogKey(t, dir, "log")
	logs := filepath.Join(dir, "witness-logs")
	writeWitnessLogs(t, logs, vkey)
	wl := &witnessedLog{dir: dir, policy: filepath.Join(dir, "policy")}
	for i := 1; i <= n; i++ {
		wl.witnesses = append(wl.witnesses, startE2EWitness(t, fmt.Sprintf("w%d", i), logs))
	}
	writePolicy(t, wl.policy, []string{vkey}, wl.witnesses, k)
	args := append([]string{"--key", keyFile, "--policy", wl.policy}, fastWitnessing...)
	wl.logProcess = startLog(t, filepath.Join(dir, "data"), append(args, extra...)...)
	return wl
}

// submitCLI runs `tidemark submit` with stdin and returns its output.
func submitCLI(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(tidemarkBin, append([]string{"submit"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String() + errOut.String(), code
}

// receiptOf submits an event with `tidemark submit --wait` and returns the
// receipt it prints.
func receiptOf(t *testing.T, logURL, event string) []byte {
	t.Helper()
	out, code := submitCLI(t, event, "--log", logURL, "--wait")
	if code != 0 {
		t.Fatalf("tidemark submit --wait: exit %d\n%s", code, out)
	}
	return []byte(strings.TrimSpace(out))
}

func verifyCLI(t *testing.T, policy string, receipt []byte) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "receipt.json")
	if err := os.WriteFile(path, receipt, 0o644); err != nil {
		t.Fatal(err)
	}
	return run(t, "", "verify", "--policy", policy, path)
}

func cosignersOf(t *testing.T, policy string, receipt []byte) []string {
	t.Helper()
	v, err := verifyReceipt([]byte(readFile(t, policy)), receipt, nil)
	if err != nil {
		t.Fatalf("receipt refused: %v\n%s", err, receipt)
	}
	var names []string
	for n := range v.Cosigners {
		names = append(names, n)
	}
	return names
}

func publishedSize(t *testing.T, logURL string) uint64 {
	t.Helper()
	resp, err := http.Get(logURL + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	lines := strings.Split(string(b), "\n")
	if len(lines) < 2 {
		t.Fatalf("checkpoint: %q", b)
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		t.Fatalf("checkpoint: %q", b)
	}
	return n
}

func metricValue(t *testing.T, logURL, series string) float64 {
	t.Helper()
	resp, err := http.Get(logURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestWitnessedReceipts runs the real log with three witnesses and a 2-of-3
// policy through the quorum met, one witness down, two down (fail-closed),
// and their return.
func TestWitnessedReceipts(t *testing.T) {
	wl := startWitnessedLog(t, 3, 2)

	// Quorum met: a receipt that `tidemark verify` accepts.
	r0 := receiptOf(t, wl.url(), `{"actor":"alice","action":"secret.read"}`)
	if out, code := verifyCLI(t, wl.policy, r0); code != 0 || !strings.Contains(out, "OK: entry 0 is in the log e2e.test/log") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	if got := cosignersOf(t, wl.policy, r0); len(got) != 2 {
		t.Fatalf("cosigners %v, want 2 of the 3", got)
	}
	served, err := http.Get(wl.url() + "/v1/policy")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(served.Body)
	served.Body.Close()
	if string(body) != readFile(t, wl.policy) {
		t.Fatalf("/v1/policy serves\n%s\nnot the policy file", body)
	}

	t.Run("tampered receipts are refused", func(t *testing.T) {
		testTamperedReceipts(t, wl.policy, r0)
	})

	// One witness down: 2 of 3 still publish.
	wl.witnesses[2].stop()
	r1 := receiptOf(t, wl.url(), `{"n":1}`)
	if got := cosignersOf(t, wl.policy, r1); len(got) != 2 || strings.Contains(strings.Join(got, ","), "w3") {
		t.Fatalf("cosigners with w3 down: %v", got)
	}

	// Two down: fail-closed publishes nothing new, and says why.
	wl.witnesses[1].stop()
	before := publishedSize(t, wl.url())
	resp, err := http.Post(wl.url()+"/v1/events?wait=witnessed", "application/json", strings.NewReader(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	var timedOut struct {
		Index uint64
		Error string
	}
	json.NewDecoder(resp.Body).Decode(&timedOut)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(timedOut.Error, fmt.Sprintf("the events are logged (index %d)", timedOut.Index)) {
		t.Fatalf("wait with 2 of 3 witnesses down: %d %+v", resp.StatusCode, timedOut)
	}
	if after := publishedSize(t, wl.url()); after != before || after > timedOut.Index {
		t.Fatalf("published size went from %d to %d with the quorum down (entry %d)", before, after, timedOut.Index)
	}
	out := wl.out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`witness did not cosign.*witness=w2.*outcome=error.*connection refused`),
		regexp.MustCompile(`witness did not cosign.*witness=w3.*outcome=error.*connection refused`),
		regexp.MustCompile(`checkpoint NOT published: the witness quorum was not met.*cosigned=\[w1\].*failed="w2: .*; w3: `),
	} {
		if !want.MatchString(out) {
			t.Errorf("the log's output does not match %s:\n%s", want, tail([]byte(out), 15))
		}
	}
	if v := metricValue(t, wl.url(), `tidemark_log_witness_requests_total{outcome="error",witness="w2"}`); v < 1 {
		t.Errorf("tidemark_log_witness_requests_total for w2 errors = %v", v)
	}
	if v := metricValue(t, wl.url(), `tidemark_log_witness_quorum_failures_total`); v < 1 {
		t.Errorf("tidemark_log_witness_quorum_failures_total = %v", v)
	}

	// They come back: publishing resumes by itself, and the entry logged
	// meanwhile gets its receipt.
	wl.witnesses[1].start()
	wl.witnesses[2].start()
	c, _ := client.New(wl.url(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := c.Receipt(ctx, timedOut.Index)
	if err != nil {
		t.Fatalf("receipt of %d after the witnesses returned: %v\n%s", timedOut.Index, err, tail(wl.out.Bytes(), 10))
	}
	p, _, _ := loadPolicy(wl.policy)
	if v, err := client.Verify(p, rc); err != nil || v.Index != timedOut.Index {
		t.Fatalf("receipt after recovery: %v", err)
	}
	wl.stop(t, syscall.SIGTERM)
}

// testTamperedReceipts changes every byte of the leaf and of the proof text
// (index, hashes, checkpoint, signatures), one at a time, and expects
// verify's check to refuse each; a few of them go through the binary too.
func testTamperedReceipts(t *testing.T, policy string, receipt []byte) {
	policyText := []byte(readFile(t, policy))
	r, err := checkpoint.ParseReceipt(receipt)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(r checkpoint.Receipt) []byte {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := verifyReceipt(policyText, encode(r), nil); err != nil {
		t.Fatal(err)
	}
	tampered := 0
	var samples [][]byte
	for _, part := range []string{"leaf", "proof"} {
		n := len(r.Leaf)
		if part == "proof" {
			n = len(r.Proof)
		}
		for i := range n {
			for _, flip := range []byte{0x01, 0x20} {
				c := checkpoint.Receipt{Index: r.Index, Leaf: bytes.Clone(r.Leaf), Proof: r.Proof}
				if part == "leaf" {
					c.Leaf[i] ^= flip
				} else {
					p := []byte(r.Proof)
					p[i] ^= flip
					c.Proof = string(p)
				}
				b := encode(c)
				if _, err := verifyReceipt(policyText, b, nil); err == nil {
					t.Errorf("%s byte %d ^ %#x: still verifies", part, i, flip)
				}
				tampered++
				if i%97 == 0 && flip == 1 {
					samples = append(samples, b)
				}
			}
		}
	}
	for _, b := range samples {
		if out, code := verifyCLI(t, policy, b); code != 1 || !strings.Contains(out, "RECEIPT REFUSED") {
			t.Errorf("tidemark verify of a tampered receipt: exit %d\n%s", code, out)
		}
	}
	t.Logf("%d tampered receipts refused, %d of them by the binary", tampered, len(samples))
}

// TestReceiptSurvivesLogKeyRotation: a receipt made under the old log key
// still verifies after the log rotated to a new key, with a policy that
// lists both.
func TestReceiptSurvivesLogKeyRotation(t *testing.T) {
	dir := t.TempDir()
	oldKey, oldV := writeLogKey(t, dir, "old")
	newKey, newV := writeLogKey(t, dir, "new")
	logs := filepath.Join(dir, "witness-logs")
	writeWitnessLogs(t, logs, oldV, newV)
	w := startE2EWitness(t, "w1", logs)
	ws := []*e2eWitness{w}
	data := filepath.Join(dir, "data")
	before, during, after := filepath.Join(dir, "before"), filepath.Join(dir, "during"), filepath.Join(dir, "newonly")
	writePolicy(t, before, []string{oldV}, ws, 1)
	writePolicy(t, during, []string{oldV, newV}, ws, 1)
	writePolicy(t, after, []string{newV}, ws, 1)

	// Before: the old key alone.
	lp := startLog(t, data, append([]string{"--key", oldKey, "--policy", before}, fastWitnessing...)...)
	rOld := receiptOf(t, lp.url(), `{"key":"old"}`)
	lp.stop(t, syscall.SIGTERM)
	// During: both keys sign.
	lp = startLog(t, data, append([]string{"--key", newKey, "--key", oldKey, "--policy", during}, fastWitnessing...)...)
	rBoth := receiptOf(t, lp.url(), `{"key":"both"}`)
	lp.stop(t, syscall.SIGTERM)
	// After: the new key alone; the policy keeps the old key for old receipts.
	lp = startLog(t, data, append([]string{"--key", newKey, "--policy", during}, fastWitnessing...)...)
	rNew := receiptOf(t, lp.url(), `{"key":"new"}`)
	lp.stop(t, syscall.SIGTERM)

	for name, r := range map[string][]byte{"old": rOld, "both": rBoth, "new": rNew} {
		if out, code := verifyCLI(t, during, r); code != 0 {
			t.Errorf("receipt signed with the %s key(s), policy with both keys: exit %d\n%s", name, code, out)
		}
	}
	// A policy that dropped the old key no longer accepts what it signed.
	if out, code := verifyCLI(t, after, rOld); code != 1 || !strings.Contains(out, "RECEIPT REFUSED") {
		t.Errorf("old receipt with a new-key-only policy: exit %d\n%s", code, out)
	}
	if out, code := verifyCLI(t, after, rNew); code != 0 {
		t.Errorf("new receipt with a new-key-only policy: exit %d\n%s", code, out)
	}
	// A log whose key is in no log line of its policy does not start.
	out, code := run(t, "", "log", "--data", filepath.Join(dir, "other"), "--key", newKey, "--policy", before, "--listen", freeAddr(t))
	if code == 0 || !strings.Contains(out, "no log line of the policy has this log's key") {
		t.Errorf("log with a key its policy does not list: exit %d\n%s", code, out)
	}
}

// TestDemo runs `tidemark demo` to completion, twice on one directory, and
// checks its receipt with `tidemark verify`.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	for i, want := range []string{"OK: entry 0 is in the log", "OK: entry 3 is in the log"} {
		cmd := exec.Command(tidemarkBin, "demo", "--data", dir, "--exit")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "tidemark verify --policy") {
			t.Fatalf("demo run %d: %v\n%s", i+1, err, out)
		}
		if out, code := run(t, "", "verify", "--policy", filepath.Join(dir, "policy.txt"), filepath.Join(dir, "receipt.json")); code != 0 {
			t.Fatalf("verify of the demo's receipt: exit %d\n%s", code, out)
		}
		out2, code := run(t, "", "verify", "--policy", filepath.Join(dir, "policy.txt"), "--leaf", filepath.Join(dir, "receipt.leaf"), filepath.Join(dir, "receipt.tlog-proof"))
		if code != 0 {
			t.Fatalf("verify of the demo's .tlog-proof: exit %d\n%s", code, out2)
		}
	}
}
