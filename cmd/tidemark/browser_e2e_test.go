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
	"strings"
	"testing"
	"time"

	tlog "github.com/tidemark/tidemark/log"
)

// browserTools returns node and Chromium for the browser test, and the
// directory of the test's script, or skips the test (fails it with
// CI=true) when one is missing.
func browserTools(t *testing.T) (nodeBin, chromium, dir string) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, and %s", msg)
		}
		t.Skip(msg)
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		missing("there is no node for the browser test: %v", err)
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("there is no Chromium for the browser test (apt-get install chromium, or set CHROMIUM): %v", err)
	}
	dir, err = filepath.Abs("../../internal/web/test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		missing("playwright-core is not installed for the browser test (npm ci --prefix internal/web/test): %v", err)
	}
	return nodeBin, chromium, dir
}

// TestBrowser runs the web page in headless Chromium against a real log
// with three witnesses and a 2-of-3 policy: the page checks an entry and
// every step passes, a tampered tile makes the check fail, search finds an
// event by its actor, and markup in an event stays text. The checks are in
// internal/web/test/browser.mjs. With TIDEMARK_SCREENSHOTS=DIR it writes
// the screenshots of docs/screenshots there (make screenshots).
func TestBrowser(t *testing.T) {
	nodeBin, chromium, dir := browserTools(t)
	wl := startWitnessedLog(t, 3, 2)

	const hostile = `<img src=x onerror="globalThis.__pwned=1">`
	events := []map[string]any{
		{"id": "evt-1", "actor": "alice", "action": "secret.read", "resource": "prod/db/users", "outcome": "success"},
		{"id": "evt-2", "actor": "bob", "action": "deploy.create", "resource": "prod/api", "outcome": "success"},
	}
	for i := 0; i < 30; i++ {
		actors := []string{"carol", "deploy-bot", "dave", "erin"}
		actions := []string{"deploy.create", "secret.read", "firewall.update", "user.login"}
		outcomes := []string{"success", "success", "failure", "success"}
		events = append(events, map[string]any{
			"id": fmt.Sprintf("evt-%d", i+3), "actor": actors[i%4], "action": actions[i%4],
			"resource": fmt.Sprintf("prod/service-%d", i%7), "outcome": outcomes[i%4],
		})
	}
	events = append(events, map[string]any{"id": "evt-x", "actor": hostile, "action": "<script>globalThis.__pwned=2</script>", "outcome": "failure"})
	ndjson := func(events []map[string]any) []byte {
		var b bytes.Buffer
		for _, e := range events {
			j, _ := json.Marshal(e)
			b.Write(append(j, '\n'))
		}
		return b.Bytes()
	}
	post := func(path, ctype string, body []byte) string {
		t.Helper()
		resp, err := http.Post(wl.url()+path, ctype, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	// Two bursts, a sampling interval of /v1/status apart, so that the
	// append-rate chart (and its screenshot) has more than one bar.
	post("/v1/events", "application/x-ndjson", ndjson(events[:12]))
	time.Sleep(11 * time.Second)
	post("/v1/events", "application/x-ndjson", ndjson(events[12:]))
	post("/add", "application/octet-stream", []byte("raw bytes, posted to /add\x00\x01\x02"))
	// The last one waits for a witnessed checkpoint that covers everything.
	post("/v1/events?wait=witnessed", "application/json", []byte(`{"id":"evt-last","actor":"frank","action":"user.logout","outcome":"success"}`))

	shots := os.Getenv("TIDEMARK_SCREENSHOTS")
	if shots != "" {
		var err error
		if shots, err = filepath.Abs(shots); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(nodeBin, filepath.Join(dir, "browser.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"TIDEMARK_LOG_URL="+wl.url()+"/",
		"TIDEMARK_POLICY_FILE="+wl.policy,
		"TIDEMARK_CHECK_INDEX=0", // alice's event; entry 1 is its sibling, which the tampering proxy changes
		"TIDEMARK_ACTOR=alice",
		"TIDEMARK_HOSTILE_TEXT="+hostile,
		"TIDEMARK_EXPECT_RAW=1",
		"TIDEMARK_EXPECT_BARS=2", // the two bursts
		"TIDEMARK_SCREENSHOTS="+shots,
		"CHROMIUM="+chromium,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(4 * time.Minute):
		cmd.Process.Kill()
		err = <-done
		t.Errorf("the browser test did not finish within 4 minutes")
	}
	t.Logf("node browser.mjs:\n%s", out.String())
	if err != nil {
		t.Fatalf("the browser test failed: %v", err)
	}
	if !strings.Contains(out.String(), "browser tests: all passed") {
		t.Fatal("the browser test did not say it passed")
	}
}

// TestBrowserCommitmentLog runs the web page in headless Chromium against a
// real `tidemark log --leaves commitment` with witnesses, in which an entry
// was erased: the entries view shows the commitment leaves as events
// committed to, opens and checks in the browser the ones the log still
// holds, shows the erased one as erased with the erasure's index, and the
// erasure leaf with its reason, and never calls a leaf "shaped like an
// event leaf"; the check view proves a commitment leaf and checks its
// content against the commitment. The checks are in
// internal/web/test/commitment.mjs.
func TestBrowserCommitmentLog(t *testing.T) {
	nodeBin, chromium, dir := browserTools(t)
	tmp := t.TempDir()
	admins := filepath.Join(tmp, "admins")
	writeTestFile(t, admins, tlog.TokenLine("dpo", "tdm_admin_browser")+"\n")
	wl := startWitnessedLogWith(t, 3, 2, "--leaves", "commitment", "--admin-tokens", admins)

	post := func(path, ctype, token string, body []byte) []byte {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, wl.url()+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ctype)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	post("/v1/events", "application/x-ndjson", "", []byte(
		`{"id":"c-1","actor":"alice","action":"secret.read","resource":"prod/db/users","outcome":"success"}`+"\n"+
			`{"id":"c-2","actor":"bob","action":"user.login","note":"pasted a password by mistake","outcome":"success"}`+"\n"+
			`{"id":"c-3","actor":"carol","action":"deploy.create","resource":"prod/api","outcome":"success"}`+"\n"))
	const reason = "GDPR request 42"
	var erased struct {
		Index        uint64 `json:"index"`
		ErasureIndex uint64 `json:"erasure_index"`
	}
	if err := json.Unmarshal(post("/v1/erase", "application/json", "tdm_admin_browser", []byte(`{"index":1,"reason":"`+reason+`"}`)), &erased); err != nil || erased.Index != 1 {
		t.Fatalf("POST /v1/erase: %v %+v", err, erased)
	}
	// The last one waits for a witnessed checkpoint that covers everything.
	post("/v1/events?wait=witnessed", "application/json", "", []byte(`{"id":"c-5","actor":"frank","action":"user.logout","outcome":"success"}`))

	cmd := exec.Command(nodeBin, filepath.Join(dir, "commitment.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"TIDEMARK_LOG_URL="+wl.url()+"/",
		"TIDEMARK_POLICY_FILE="+wl.policy,
		"TIDEMARK_OPENED=0", // alice's event
		"TIDEMARK_ACTOR=alice",
		"TIDEMARK_ERASED=1",
		fmt.Sprintf("TIDEMARK_ERASURE=%d", erased.ErasureIndex),
		"TIDEMARK_REASON="+reason,
		"TIDEMARK_ENTRIES=5",
		"CHROMIUM="+chromium,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		err = <-done
		t.Errorf("the browser test did not finish within 3 minutes")
	}
	t.Logf("node commitment.mjs:\n%s", out.String())
	if err != nil {
		t.Fatalf("the browser test failed: %v", err)
	}
	if !strings.Contains(out.String(), "browser tests: all passed") {
		t.Fatal("the browser test did not say it passed")
	}
}
