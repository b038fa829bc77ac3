package witness

import (
	"fmt"
	"strings"
	"testing"
)

// TestFullStateAnswers503AndStoresNothing fills the witness's database to
// its limit (SQLite's max_page_count makes a real SQLITE_FULL, as a full
// disk does, without mounting anything): the checkpoint that no longer fits
// gets a 503 with Retry-After and no cosignature, the state stays at what
// was cosigned before, in memory and on disk, and once there is room again
// the same request is cosigned, without a restart.
func TestFullStateAnswers503AndStoresNothing(t *testing.T) {
	var logs []*testLog
	for i := range 200 {
		logs = append(logs, newTestLog(t, fmt.Sprintf("example.com/log%03d", i)))
	}
	tw := newTestWitness(t, logList(logs...), nil)
	var pages int
	if err := tw.w.state.db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.w.state.db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	// Each log's first checkpoint adds a row; some row does not fit.
	full := -1
	for i, l := range logs {
		r := tw.addCheckpoint(l.request(0, 5))
		if r.code == 200 {
			continue
		}
		if r.code != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "disk is full") {
			t.Fatalf("log %d: %d %q (Retry-After %q), want 503 saying the disk is full", i, r.code, r.body, r.header.Get("Retry-After"))
		}
		if strings.Contains(r.body, "—") || strings.Contains(r.body, tw.cfg.Dir) {
			t.Errorf("the 503 carries a signature line or a path: %q", r.body)
		}
		full = i
		break
	}
	if full < 0 {
		t.Fatal("the database never filled up")
	}
	t.Logf("the database filled up at log %d", full)
	l := logs[full]
	// Nothing was stored: the witness still knows no checkpoint of the log.
	if r := tw.do("GET", "/"+originHash(l.origin)+"/checkpoint", ""); r.code != 404 {
		t.Errorf("after the failed write the monitoring endpoint answers %d %q, want 404", r.code, r.body)
	}
	if r := tw.addCheckpoint(l.request(5, 5)); r.code != 409 || r.body != "0\n" {
		t.Errorf("after the failed write, old 5 gets %d %q, want 409 with size 0", r.code, r.body)
	}
	if got := counter(t, tw, `tidemark_witness_storage_errors_total{kind="full"}`); got != "1" {
		t.Errorf("storage errors counter %q, want 1", got)
	}
	// Room again: the same request is cosigned.
	if _, err := tw.w.state.db.Exec("PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	tw.cosigned(l.checkpoint(5), tw.addCheckpoint(l.request(0, 5)))
	// And it is durable: a restarted witness has it.
	tw.restart()
	if r := tw.addCheckpoint(l.request(0, 8)); r.code != 409 || r.body != "5\n" {
		t.Errorf("after a restart, old 0 gets %d %q, want 409 with size 5", r.code, r.body)
	}
	for _, before := range logs[:full] {
		if r := tw.addCheckpoint(before.request(0, 8)); r.code != 409 || r.body != "5\n" {
			t.Errorf("%s: state lost, got %d %q", before.origin, r.code, r.body)
			break
		}
	}
}

// counter returns the value of one metric line from /metrics, as text.
func counter(t *testing.T, tw *testWitness, series string) string {
	t.Helper()
	r := tw.do("GET", "/metrics", "")
	for _, line := range strings.Split(r.body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}
