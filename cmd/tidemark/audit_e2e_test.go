package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api/layout"
)

// audit runs `tidemark audit` and returns its output and exit status.
func audit(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(tidemarkBin, append([]string{"audit", "--progress", "off"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// postEvents posts n events to the log and waits until a published
// checkpoint covers them.
func postEvents(t *testing.T, logURL string, n int) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		action := "deploy.create"
		if i%10 == 3 {
			action = "secret.read"
		}
		fmt.Fprintf(&b, `{"id":"e2e-%d","action":%q,"resource":"prod/db/%d","actor":"alice"}`+"\n", i, action, i)
	}
	resp, err := http.Post(logURL+"/v1/events", "application/x-ndjson", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /v1/events: %d %s", resp.StatusCode, body)
	}
	for deadline := time.Now().Add(30 * time.Second); publishedSize(t, logURL) < uint64(n); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers %d entries", n)
		}
	}
}

// TestAuditWitnessedLog audits the real log and three real witnesses: an
// honest log verifies (exit 0), with rules alerting through the webhook; a
// tampered tile on disk is misbehaviour (1); an unreachable log could not
// be checked (2).
func TestAuditWitnessedLog(t *testing.T) {
	wl := startWitnessedLog(t, 3, 2)
	postEvents(t, wl.url(), 600)
	state := t.TempDir()

	out, code := audit(t, "--policy", wl.policy, "--log-url", wl.url(), "--state", state)
	if code != 0 || !strings.Contains(out, "result: verified") || !strings.Contains(out, "witnessed=true") {
		t.Fatalf("honest log: exit %d\n%s", code, out)
	}
	// Gossip reached every witness: none is reported missing or down.
	if strings.Contains(out, "INFO witness") {
		t.Fatalf("gossip with the real witnesses failed:\n%s", out)
	}

	var mu sync.Mutex
	var alerts []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		alerts = append(alerts, a)
		mu.Unlock()
	}))
	defer hook.Close()
	rules := filepath.Join(t.TempDir(), "rules")
	os.WriteFile(rules, []byte(`prod-secrets: action == "secret.read" && resource ^= "prod/"`+"\n"), 0o644)
	out, code = audit(t, "--policy", wl.policy, "--log-url", wl.url(), "--state", state, "--full", "--rules", rules, "--alert-webhook", hook.URL)
	if code != 0 || !strings.Contains(out, "verified=true") || !strings.Contains(out, "leaves 600 (event 600, raw 0, bad 0) rule-hits 60") {
		t.Fatalf("full check of the honest log: exit %d\n%s", code, out)
	}
	mu.Lock()
	if len(alerts) != 60 || alerts[0]["kind"] != "rule" || alerts[0]["severity"] != "warning" || alerts[0]["origin"] != "e2e.test/log" {
		t.Fatalf("%d alerts, first %v", len(alerts), alerts[0])
	}
	mu.Unlock()

	// A full hash tile changed on the log's disk.
	tile := filepath.Join(wl.dir, "data", filepath.FromSlash(layout.TilePath(0, 1, 0)))
	b, err := os.ReadFile(tile)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	os.WriteFile(tile, b, 0o644)
	out, code = audit(t, "--policy", wl.policy, "--log-url", wl.url(), "--full")
	if code != 1 || !strings.Contains(out, "bad-tiles") {
		t.Fatalf("tampered tile: exit %d\n%s", code, out)
	}

	out, code = audit(t, "--policy", wl.policy, "--log-url", "http://"+freeAddr(t))
	if code != 2 || !strings.Contains(out, "result: could not check") {
		t.Fatalf("unreachable log: exit %d\n%s", code, out)
	}
}

// TestAuditCheckEvidence re-checks evidence files with the policy alone.
func TestAuditCheckEvidence(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, _ := checkpoint.GenerateLogKey("e2e.test/log")
	signer, _ := checkpoint.NewLogSigner(skey)
	_, wvkey, _ := checkpoint.GenerateWitnessKey("e2e.test/w1")
	policy := filepath.Join(dir, "policy")
	os.WriteFile(policy, []byte(fmt.Sprintf("log %s http://127.0.0.1:1\nwitness w1 %s\nquorum w1\n", vkey, wvkey)), 0o644)
	sign := func(root byte) string {
		h := make([]byte, 32)
		h[0] = root
		s, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "e2e.test/log", Size: 5, Hash: h}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return string(s)
	}
	write := func(name string, cps ...string) string {
		b, _ := json.Marshal(map[string]any{"origin": "e2e.test/log", "kind": "split-view", "checkpoints": cps})
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	for _, tc := range []struct {
		file string
		want int
	}{
		{write("fork.json", sign(1), sign(2)), 1},
		{write("same.json", sign(1), sign(1)), 0},
		{write("one.json", sign(1)), 2},
	} {
		out, code := audit(t, "--policy", policy, "--check-evidence", tc.file)
		if code != tc.want {
			t.Errorf("%s: exit %d, want %d\n%s", tc.file, code, tc.want, out)
		}
	}
}

// TestAuditExport exports the real log's verified events: to a file, each
// record with the witnessed checkpoint it was checked against; then
// incrementally (nothing new, nothing exported); then to a Splunk HEC
// endpoint from a fresh state. Mistakes in the flags are usage errors.
func TestAuditExport(t *testing.T) {
	wl := startWitnessedLog(t, 3, 2)
	postEvents(t, wl.url(), 300)
	state := t.TempDir()
	dest := filepath.Join(t.TempDir(), "events.ndjson")
	out, code := audit(t, "--policy", wl.policy, "--log-url", wl.url(), "--state", state, "--export", dest)
	if code != 0 || !strings.Contains(out, "verified=true") || !strings.Contains(out, "export: 300 verified events exported") {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 300 {
		t.Fatalf("%d records", len(lines))
	}
	for i, line := range lines {
		var rec struct {
			Index      uint64          `json:"index"`
			Received   string          `json:"received"`
			Source     string          `json:"source"`
			Event      json.RawMessage `json:"event"`
			IdemKey    string          `json:"idempotency_key"`
			Checkpoint struct {
				Origin   string `json:"origin"`
				Size     uint64 `json:"size"`
				RootHash string `json:"root_hash"`
				Note     string `json:"note"`
			} `json:"checkpoint"`
		}
		d := json.NewDecoder(strings.NewReader(line))
		d.DisallowUnknownFields()
		if err := d.Decode(&rec); err != nil {
			t.Fatalf("record %d: %v: %s", i, err, line)
		}
		cp := rec.Checkpoint
		if rec.Index != uint64(i) || !strings.Contains(string(rec.Event), fmt.Sprintf(`"id":"e2e-%d"`, i)) || cp.Origin != "e2e.test/log" ||
			cp.Size < 300 || !strings.HasPrefix(cp.Note, fmt.Sprintf("e2e.test/log\n%d\n%s\n", cp.Size, cp.RootHash)) || strings.Count(cp.Note, "\n— ") < 3 {
			t.Fatalf("record %d: %s", i, line)
		}
	}

	// Nothing new since: nothing more.
	out, code = audit(t, "--policy", wl.policy, "--log-url", wl.url(), "--state", state, "--export", dest)
	if b2, _ := os.ReadFile(dest); code != 0 || len(b2) != len(b) {
		t.Fatalf("second export: exit %d, %d bytes, was %d\n%s", code, len(b2), len(b), out)
	}

	var mu sync.Mutex
	var events int
	hec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Splunk hec-token" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"text":"Invalid authorization","code":3}`)
			return
		}
		d := json.NewDecoder(r.Body)
		mu.Lock()
		defer mu.Unlock()
		for d.More() {
			var e struct {
				SourceType string         `json:"sourcetype"`
				Event      map[string]any `json:"event"`
			}
			if err := d.Decode(&e); err != nil || e.SourceType != "tidemark:event" || e.Event["checkpoint"] == nil {
				t.Errorf("HEC event: %v %+v", err, e)
			}
			events++
		}
		fmt.Fprint(w, `{"text":"Success","code":0}`)
	}))
	defer hec.Close()
	cmd := exec.Command(tidemarkBin, "audit", "--progress", "off", "--policy", wl.policy, "--log-url", wl.url(), "--state", t.TempDir(),
		"--export", hec.URL+"/services/collector/event", "--export-format", "splunk-hec")
	cmd.Env = append(os.Environ(), "TIDEMARK_AUDIT_EXPORT_TOKEN=hec-token")
	if outb, err := cmd.CombinedOutput(); err != nil || events != 300 {
		t.Fatalf("HEC export: %v, %d events\n%s", err, events, outb)
	}

	// To stdout: the records alone; the report goes to stderr.
	cmd = exec.Command(tidemarkBin, "audit", "--progress", "off", "--policy", wl.policy, "--log-url", wl.url(), "--export", "-")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil || strings.Count(string(stdout), "\n") != 300 || !strings.HasPrefix(string(stdout), `{"index":0,`) || !strings.Contains(stderr.String(), "result: verified") {
		t.Fatalf("export to stdout: %v\n%.300s\n%s", err, stdout, stderr.String())
	}

	for _, args := range [][]string{
		{"--export", dest, "--export-format", "es-bulk"},
		{"--export", dest, "--export-format", "csv"},
		{"--export", dest, "--follow"},
		{"--export", dest, "--skip-payloads"},
	} {
		out, code := audit(t, append([]string{"--policy", wl.policy, "--log-url", wl.url()}, args...)...)
		if code != 2 || !strings.Contains(out, "--export") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
}
