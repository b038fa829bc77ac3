package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testmysql"
)

// TestMigrateCommand moves a log from its data directory to MySQL with the
// real binaries: `tidemark log --data`, `tidemark migrate`, `tidemark log
// --mysql` with the same key; Tessera's fsck checks the new log, an old
// receipt verifies with `tidemark verify`, old retries get their old
// indexes, and a second migration while the log runs is refused.
func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	lp := startLog(t, dir)
	const batches, per = 5, 500
	for b := range batches {
		var nd bytes.Buffer
		for i := range per {
			fmt.Fprintf(&nd, "{\"id\":\"m-%d-%d\",\"action\":\"migrate.e2e\"}\n", b, i)
		}
		resp, err := http.Post(lp.url()+"/v1/events", "application/x-ndjson", &nd)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("batch %d: %v %v", b, resp, err)
		}
		resp.Body.Close()
	}
	keyed := map[string]uint64{}
	for i := range 7 {
		key := fmt.Sprintf("k-%d", i)
		idx, err := postKeyed(t.Context(), lp.url(), key)
		if err != nil {
			t.Fatal(err)
		}
		keyed[key] = idx
	}
	const size = batches*per + 7
	receipt := getReceipt(t, lp.url(), keyed["k-3"])
	_, policy := getText(t, lp.url()+"/v1/policy")
	receiptFile, policyFile := filepath.Join(t.TempDir(), "r.json"), filepath.Join(t.TempDir(), "policy")
	os.WriteFile(receiptFile, []byte(receipt), 0o644)
	os.WriteFile(policyFile, []byte(policy), 0o644)
	lp.stop(t, syscall.SIGTERM)

	dsn := testmysql.New(t)
	r := runCLI(t, nil, "", "migrate", "--from", dir, "--mysql", dsn, "--progress", "200ms")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("%d entries", size)) {
		t.Fatalf("tidemark migrate: %s", r)
	}
	t.Logf("%s", strings.TrimSpace(r.stdout))

	np := startServer(t, "log", []string{"--data", t.TempDir(), "--mysql", dsn, "--key", filepath.Join(dir, "log.key")})
	// The first checkpoint the new log signs covers the migrated tree.
	_, cp := getText(t, np.url()+"/checkpoint")
	if lines := strings.SplitN(cp, "\n", 3); len(lines) < 3 || lines[0] != "e2e.test/log" || lines[1] != fmt.Sprint(size) {
		t.Fatalf("new log's checkpoint:\n%s", cp)
	}
	fsckLog(t, np.url(), filepath.Join(dir, "log.pub"))

	if v := runCLI(t, nil, "", "verify", "--policy", policyFile, receiptFile); v.code != 0 {
		t.Errorf("the old receipt does not verify: %s", v)
	}
	nrec := getReceipt(t, np.url(), keyed["k-3"])
	os.WriteFile(receiptFile, []byte(nrec), 0o644)
	if v := runCLI(t, nil, "", "verify", "--policy", policyFile, receiptFile); v.code != 0 {
		t.Errorf("the new log's receipt for the old entry does not verify with the old policy: %s", v)
	}
	var oldR, newR struct{ Leaf []byte }
	if json.Unmarshal([]byte(receipt), &oldR) != nil || json.Unmarshal([]byte(nrec), &newR) != nil || !bytes.Equal(oldR.Leaf, newR.Leaf) {
		t.Error("the new log's entry is not the old one")
	}
	for key, want := range keyed {
		if got, err := postKeyed(t.Context(), np.url(), key); err != nil || got != want {
			t.Errorf("retry of %s on the new log: %d %v, want %d", key, got, err, want)
		}
	}
	// A second migration while the log runs is refused.
	r = runCLI(t, nil, "", "migrate", "--from", dir, "--mysql", dsn)
	if r.code != 1 || !strings.Contains(r.stderr, "a log is running on the database") {
		t.Errorf("migrating into a running log's database: %s", r)
	}
	t.Logf("refused: %s", strings.TrimSpace(r.stderr))
	if got, err := postKeyed(t.Context(), np.url(), "new-1"); err != nil || got != size {
		t.Errorf("first new entry at %d (%v), want %d", got, err, size)
	}
	np.stop(t, syscall.SIGTERM)
}

// getReceipt GETs the receipt of index, once a checkpoint covers it.
func getReceipt(t *testing.T, logURL string, index uint64) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status, body := getText(t, fmt.Sprintf("%s/v1/receipt/%d", logURL, index))
		if status == http.StatusOK {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/receipt/%d: %d %s", index, status, body)
		}
	}
}

// The S3 flags of `tidemark migrate` are `tidemark log`'s, with its checks.
func TestMigrateS3Flags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "--from", dir, "--s3-bucket", "b"}, "--s3-bucket needs --mysql DSN"},
		{[]string{"migrate", "--from", dir, "--mysql", "root@tcp(127.0.0.1:3306)/x", "--s3-prefix", "p"}, "need --s3-bucket"},
		{[]string{"migrate", "--from", dir, "--mysql", "root@tcp(127.0.0.1:3306)/x", "--s3-retention", "1h"}, "need --s3-bucket"},
	} {
		if out, code := run(t, dir, tc.args...); code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, %s; want 2 and %q", tc.args, code, out, tc.want)
		}
	}
	out, _ := run(t, dir, "migrate", "--help")
	for _, f := range []string{"--s3-bucket", "--s3-endpoint", "--s3-prefix", "--s3-region", "--s3-retention"} {
		if !strings.Contains(out, f) {
			t.Errorf("migrate --help does not mention %s:\n%s", f, out)
		}
	}
}
