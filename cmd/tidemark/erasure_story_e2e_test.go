package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/report"
)

// TestErasureStoryWithWitnessesAndReport is issue 14 in one piece, with
// real processes: a commitment-mode log with three witnesses (2 of 3), a
// writer, a reader (the auditor's token) and an admin; events, then
// `tidemark erase` of one; then `tidemark audit --full` with the reader's
// token verifies the log (every present event opened, the erased one
// covered by its erasure leaf), and `tidemark report` over the period
// counts what the log holds: the opened events by action, the erasure with
// its reason and admin, the witnessed checkpoint and its cosigners.
func TestErasureStoryWithWitnessesAndReport(t *testing.T) {
	dir := t.TempDir()
	writer, writerLine := newToken(t, "ci-deploy")
	reader, readerLine := newToken(t, "auditor")
	admin, adminLine := newToken(t, "dpo")
	tokens := writeTestFile(t, filepath.Join(dir, "tokens"), writerLine+"\n")
	readers := writeTestFile(t, filepath.Join(dir, "readers"), readerLine+"\n")
	admins := writeTestFile(t, filepath.Join(dir, "admins"), adminLine+"\n")
	readerFile := writeTestFile(t, filepath.Join(dir, "reader.token"), reader+"\n")
	adminFile := writeTestFile(t, filepath.Join(dir, "admin.token"), admin+"\n")
	wl := startWitnessedLogWith(t, 3, 2, "--leaves", "commitment", "--tokens", tokens, "--read-tokens", readers, "--admin-tokens", admins)
	u := wl.url()

	from := time.Now().UTC()
	var evs []string
	for i := range 10 {
		action := "deploy.create"
		if i%5 == 4 {
			action = "secret.read"
		}
		evs = append(evs, fmt.Sprintf(`{"id":"s-%d","actor":"ci","action":%q,"resource":"prod/app/%d","outcome":"success"}`, i, action, i))
	}
	idx := postAs(t, u, writer, evs)
	waitCovered(t, u, 10)
	// Erase the second secret.read (index idx[9]); the reason is public.
	out, code := run(t, "", "erase", "--log", u, "--index", fmt.Sprint(idx[9]), "--reason", "pasted a password, ticket SEC-7", "--token-file", adminFile)
	if code != 0 {
		t.Fatalf("tidemark erase: exit %d\n%s", code, out)
	}
	waitCovered(t, u, 11)
	time.Sleep(10 * time.Millisecond)
	to := time.Now().UTC()

	out, code = audit(t, "--policy", wl.policy, "--log-url", u, "--full", "--read-token-file", readerFile)
	if code != 0 || !strings.Contains(out, "verified=true") {
		t.Fatalf("audit --full of the erased commitment log: exit %d\n%s", code, out)
	}
	// Without the reader's token the auditor cannot open the events, and
	// says so rather than passing them.
	if out, code := audit(t, "--policy", wl.policy, "--log-url", u, "--full"); code != 2 || !strings.Contains(out, "--read-token-file") {
		t.Fatalf("audit --full without a read token: exit %d\n%s", code, out)
	}

	htmlFile, jsonFile := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.json")
	o, code := reportCLI(t, "--policy", wl.policy, "--log", u, "--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano),
		"--out", htmlFile, "--json", jsonFile, "--read-token-file", readerFile, "--state", filepath.Join(dir, "report-state"))
	if code != 0 {
		t.Fatalf("tidemark report: exit %d\n%s", code, o)
	}
	jb, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(jb, &r); err != nil {
		t.Fatal(err)
	}
	v := r.Verification
	if !v.Verified || v.CommitmentLeaves != 10 || v.ErasureLeaves != 1 || v.EventLeaves != 0 || v.BadLeaves != 0 {
		t.Fatalf("verification %+v", v)
	}
	e := r.Entries
	// 10 commitments and the erasure in the period; 9 opened (one erased).
	if e.Entries != 11 || e.Commitments != 10 || e.Erasures != 1 || e.Opened != 9 {
		t.Fatalf("period entries %+v", e)
	}
	if e.ByAction["deploy.create"] != 8 || e.ByAction["secret.read"] != 1 {
		t.Fatalf("by action %v: the 8 deploys and the one secret.read left", e.ByAction)
	}
	if len(r.Erasures.InPeriod) != 1 {
		t.Fatalf("erasures %+v", r.Erasures)
	}
	er := r.Erasures.InPeriod[0]
	if er.Source != "dpo" || er.Reason != "pasted a password, ticket SEC-7" || len(er.Ranges) != 1 || er.Ranges[0] != [2]uint64{idx[9], idx[9] + 1} {
		t.Fatalf("erasure %+v", er)
	}
	if r.Checkpoint == nil || r.Checkpoint.Size < 11 || len(r.Checkpoint.Cosigners) < 2 {
		t.Fatalf("checkpoint %+v", r.Checkpoint)
	}
	h, _ := os.ReadFile(htmlFile)
	for _, want := range []string{"pasted a password, ticket SEC-7", "dpo", "PCI DSS", "Annex A 8.15", "SOC 2"} {
		if !strings.Contains(string(h), want) {
			t.Errorf("the HTML report does not hold %q", want)
		}
	}
}

// TestRetentionKeepsEveryCheck: a commitment log with `--retention 2s` and
// witnesses erases old events by itself, in logged erasures of source
// "retention"; Tessera's fsck, `tidemark audit --full` (every erased event
// covered) and the receipts taken before all still pass.
func TestRetentionKeepsEveryCheck(t *testing.T) {
	dir := t.TempDir()
	reader, readerLine := newToken(t, "auditor")
	readers := writeTestFile(t, filepath.Join(dir, "readers"), readerLine+"\n")
	readerFile := writeTestFile(t, filepath.Join(dir, "reader.token"), reader+"\n")
	wl := startWitnessedLogWith(t, 3, 2, "--leaves", "commitment", "--read-tokens", readers, "--retention", "2s")
	u := wl.url()
	old := receiptOf(t, u, `{"id":"r-0","action":"login","actor":"alice"}`)
	postEvents(t, u, 20)

	// Wait for a retention erasure to cover the first 21 events.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, code := audit(t, "--policy", wl.policy, "--log-url", u, "--full", "--read-token-file", readerFile)
		if code != 0 {
			t.Fatalf("audit --full while retention runs: exit %d\n%s", code, out)
		}
		if strings.Contains(out, "erased 21,") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention erased nothing in a minute:\n%s", out)
		}
		time.Sleep(time.Second)
	}
	if out, code := verifyCLI(t, wl.policy, old); code != 0 || !strings.Contains(out, `"login"`) {
		t.Fatalf("a receipt taken before retention erased its event: exit %d\n%s", code, out)
	}
	// Tessera's fsck needs the log's public key in a file.
	pub := ""
	for _, l := range strings.Split(readFile(t, wl.policy), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "log" {
			pub = writeTestFile(t, filepath.Join(dir, "log.pub"), f[1]+"\n")
		}
	}
	fsckLog(t, u, pub)
}
