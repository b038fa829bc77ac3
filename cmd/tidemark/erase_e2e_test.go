package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	tlog "github.com/tidemark/tidemark/log"
)

// The commands end to end on a commitment log: `tidemark submit --wait`
// gets a receipt that opens to its event, `tidemark erase` with an admin
// token erases it (and a writer's token cannot), the event's bytes are
// nowhere in the data directory afterwards, `tidemark verify` still
// passes on the receipt, and Tessera's fsck and `tidemark audit --full`
// on the log, whose auditor also catches a payload changed in the store;
// a restart with
// the other leaf mode is refused.
func TestEraseCommandOnACommitmentLog(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	admins := filepath.Join(dir, "admins")
	writers := filepath.Join(dir, "writers")
	writeTestFile(t, admins, tlog.TokenLine("security-team", "tdm_admin_e2e")+"\n")
	writeTestFile(t, writers, tlog.TokenLine("app", "tdm_writer_e2e")+"\n")
	writerToken := filepath.Join(dir, "writer.token")
	adminToken := filepath.Join(dir, "admin.token")
	writeTestFile(t, writerToken, "tdm_writer_e2e\n")
	writeTestFile(t, adminToken, "tdm_admin_e2e\n")
	lp := startServerEnv(t, []string{"TIDEMARK_LOG_LEAVES=commitment"}, "log", []string{"--data", data, "--origin", "e2e.test/log",
		"--tokens", writers, "--admin-tokens", admins})

	const secret = "e2e-secret-3f9d1c77"
	out, code := submitCLI(t, `{"actor":"alice","note":"`+secret+`"}`, "--log", lp.url(), "--wait", "--token-file", writerToken)
	if code != 0 {
		t.Fatalf("tidemark submit --wait: exit %d\n%s", code, out)
	}
	receipt := []byte(strings.TrimSpace(out))
	rc, err := checkpoint.ParseReceipt(receipt)
	if err != nil || rc.Opening == nil || !bytes.Contains(rc.Opening.Leaf, []byte(secret)) || bytes.Contains(rc.Leaf, []byte(secret)) {
		t.Fatalf("the receipt of a commitment log's event (%v): %s", err, receipt)
	}
	for _, ev := range []string{`{"actor":"bob"}`, `{"actor":"carol"}`} {
		if out, code := submitCLI(t, ev, "--log", lp.url(), "--token-file", writerToken); code != 0 {
			t.Fatalf("tidemark submit: exit %d\n%s", code, out)
		}
	}
	policy := filepath.Join(dir, "policy")
	_, p := getText(t, lp.url()+"/v1/policy")
	writeTestFile(t, policy, p)

	eraseCLI := func(token string, index uint64) (string, int) {
		return run(t, "", "erase", "--log", lp.url(), "--index", strconv.FormatUint(index, 10), "--reason", "GDPR request 42", "--token-file", token)
	}
	if out, code := eraseCLI(writerToken, rc.Index); code != 1 || !strings.Contains(out, "401") {
		t.Fatalf("tidemark erase with a writer's token: exit %d\n%s", code, out)
	}
	if out, code := run(t, "", "erase", "--log", lp.url(), "--index", "0"); code != 2 {
		t.Fatalf("tidemark erase without --reason: exit %d\n%s", code, out)
	}
	out, code = eraseCLI(adminToken, rc.Index)
	var e struct {
		Index        uint64 `json:"index"`
		ErasureIndex uint64 `json:"erasure_index"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &e) != nil || e.Index != rc.Index || e.ErasureIndex != 3 {
		t.Fatalf("tidemark erase: exit %d\n%s", code, out)
	}
	if out, code := eraseCLI(adminToken, rc.Index); code != 1 || !strings.Contains(out, "409") {
		t.Fatalf("tidemark erase of an erased entry: exit %d\n%s", code, out)
	}
	if out, code := verifyCLI(t, policy, receipt); code != 0 {
		t.Fatalf("tidemark verify on a receipt from before the erasure: exit %d\n%s", code, out)
	}
	var holding []string
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(secret)) {
			holding = append(holding, path)
		}
		return nil
	})
	if err != nil || len(holding) > 0 {
		t.Fatalf("after the erasure the event's bytes are in %v (%v)", holding, err)
	}
	// Wait until a checkpoint covers the erasure leaf, for fsck.
	for deadline := time.Now().Add(10 * time.Second); publishedSize(t, lp.url()) < 4; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covers the erasure leaf")
		}
	}
	fsckLog(t, lp.url(), filepath.Join(data, "log.pub"))
	// The auditor opens every commitment it is served and accepts the
	// missing one only because an erasure leaf covers it.
	if out, code := audit(t, "--policy", policy, "--log-url", lp.url(), "--full"); code != 0 || !strings.Contains(out, "result: verified") || !strings.Contains(out, "opened 2, erased 1") {
		t.Fatalf("tidemark audit --full on an erased commitment log: exit %d\n%s", code, out)
	} else {
		t.Logf("tidemark audit --full:\n%s", out)
	}

	// A payload changed in the store (an insider editing bob's event) is
	// served as it is, and the auditor catches it.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, ".tidemark", "payloads.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := db.Exec(`UPDATE tidemark_payloads SET leaf = replace(leaf, 'bob', 'eve') WHERE instr(leaf, 'bob') > 0`); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("changed %d payload rows, want bob's", n)
	}
	db.Close()
	if out, code := audit(t, "--policy", policy, "--log-url", lp.url(), "--full"); code != 1 || !strings.Contains(out, "bad-opening") {
		t.Fatalf("tidemark audit --full on a log whose payload store was changed: exit %d, want 1 with bad-opening\n%s", code, out)
	}

	lp.stop(t, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, tidemarkBin, "log", "--data", data, "--listen", freeAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "--leaves commitment") {
		t.Fatalf("a commitment log restarted as an event log: %v\n%s", err, tail(b, 10))
	}
}
