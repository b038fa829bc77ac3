package log

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
	"github.com/tidemark/tidemark/internal/testmysql"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	tclient "github.com/transparency-dev/tessera/client"
)

// fillKeyed posts n events with ids ("<prefix>-<i>", keyed implicitly) in
// NDJSON batches and returns the index of each id.
func (tl *testLog) fillKeyed(prefix string, n int) map[string]uint64 {
	tl.t.Helper()
	out := map[string]uint64{}
	for from := 0; from < n; from += 500 {
		var nd bytes.Buffer
		var ids []string
		for i := from; i < min(from+500, n); i++ {
			id := fmt.Sprintf("%s-%d", prefix, i)
			ids = append(ids, id)
			fmt.Fprintf(&nd, "{\"id\":%q,\"action\":\"migrate.test\",\"n\":%d}\n", id, i)
		}
		r := tl.post("/v1/events", "application/x-ndjson", nd.Bytes())
		var res struct{ Results []eventResult }
		if r.status != 200 || json.Unmarshal(r.body, &res) != nil || len(res.Results) != len(ids) {
			tl.t.Fatalf("batch: %d %s", r.status, r.body)
		}
		for i, id := range ids {
			out[id] = res.Results[i].Index
		}
	}
	return out
}

func (tl *testLog) receipt(index uint64) checkpoint.Receipt {
	tl.t.Helper()
	r := tl.get(fmt.Sprintf("/v1/receipt/%d", index))
	if r.status != 200 {
		tl.t.Fatalf("GET /v1/receipt/%d: %d %s", index, r.status, r.body)
	}
	rc, err := checkpoint.ParseReceipt(r.body)
	if err != nil {
		tl.t.Fatal(err)
	}
	return rc
}

// signedCheckpoint reads GET /checkpoint and verifies it with the log key.
func (tl *testLog) signedCheckpoint() checkpoint.Checkpoint {
	tl.t.Helper()
	r := tl.get("/checkpoint")
	if r.status != 200 {
		tl.t.Fatalf("GET /checkpoint: %d %s", r.status, r.body)
	}
	c, _, err := checkpoint.Open(r.body, mustVerifier(tl.t, tl.cfg.Keys.VKeys[0]))
	if err != nil {
		tl.t.Fatalf("the checkpoint does not verify: %v\n%s", err, r.body)
	}
	return c
}

// A POSIX log with a few thousand keyed entries is migrated into MySQL and
// a log started there with the same key: same tree, old receipts still
// verify and are consistent with the new log's checkpoints, retries of old
// events are answered with their old indexes, new entries follow.
func TestMigratePOSIXToMySQL(t *testing.T) {
	src := newMigrationSource(t, 3001) // not a whole number of bundles
	old, n, oldCP := src.log, src.n, src.cp

	dsn := testmysql.New(t)
	var calls int
	res, err := Migrate(context.Background(), MigrateConfig{From: old.dir, MySQL: dsn, ProgressEvery: 100 * time.Millisecond,
		Progress: func(p MigrateProgress) {
			calls++
			if p.Total != n || p.Integrated > n || p.Copied > n {
				t.Errorf("progress %+v", p)
			}
		}})
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if res.Size != n || !bytes.Equal(res.Root, oldCP.Hash) || res.Origin != "test.example/log" || res.Resumed != 0 {
		t.Errorf("result %+v", res)
	}
	if calls == 0 {
		t.Error("no progress reported")
	}
	t.Logf("migrated %d entries in %s (%.0f entries/s)", n, res.Took.Round(time.Millisecond), float64(n)/res.Took.Seconds())

	// Running it again does nothing and succeeds.
	again, err := Migrate(context.Background(), MigrateConfig{From: old.dir, MySQL: dsn})
	if err != nil || !again.AlreadyDone {
		t.Fatalf("second Migrate: %+v, %v", again, err)
	}

	// The log on MySQL, with the same key.
	nl := &testLog{t: t, dir: t.TempDir(), cfg: Config{MySQL: dsn, Keys: old.cfg.Keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second, RepublishInterval: time.Second}}
	nl.cfg.Dir = nl.dir
	nl.start()
	t.Cleanup(func() {
		if nl.s != nil {
			nl.close()
		}
	})
	src.checkMigrated(t, nl)

	// The log has moved on: migrating again is refused.
	nl.close()
	if _, err := Migrate(context.Background(), MigrateConfig{From: old.dir, MySQL: dsn}); err == nil || !strings.Contains(err.Error(), "more than the source's") {
		t.Errorf("migrating into the log that moved on: %v, want a refusal", err)
	}
}

// A database that holds another log is refused, and so is a log's
// migration verified with the wrong key.
func TestMigrateRefusesAnotherLog(t *testing.T) {
	src := newTestLog(t, nil)
	src.fillKeyed("a", 600)
	waitForCheckpoint(t, src, 600)
	src.close()

	// Another log, with another key, on the target.
	dsn := testmysql.New(t)
	otherKeys, _, err := LoadKeys(t.TempDir(), nil, "other.example/log")
	if err != nil {
		t.Fatal(err)
	}
	other := &testLog{t: t, dir: t.TempDir(), cfg: Config{MySQL: dsn, Keys: otherKeys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second}}
	other.cfg.Dir = other.dir
	other.start()
	other.fillKeyed("b", 10)
	waitForCheckpoint(t, other, 10)
	other.close()

	_, err = Migrate(context.Background(), MigrateConfig{From: src.dir, MySQL: dsn})
	if err == nil || !strings.Contains(err.Error(), "already holds another log") {
		t.Fatalf("migrating into another log's database: %v, want a refusal", err)
	}
	t.Logf("refused: %v", err)

	// Same origin and key, a different tree (another log made with the
	// same key): refused as not a prefix.
	dsn2 := testmysql.New(t)
	twin := &testLog{t: t, dir: t.TempDir(), cfg: Config{MySQL: dsn2, Keys: src.cfg.Keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second}}
	twin.cfg.Dir = twin.dir
	twin.start()
	twin.fillKeyed("c", 10)
	waitForCheckpoint(t, twin, 10)
	twin.close()
	_, err = Migrate(context.Background(), MigrateConfig{From: src.dir, MySQL: dsn2})
	if err == nil || !strings.Contains(err.Error(), "not a prefix") {
		t.Fatalf("migrating into a database with a different tree: %v, want a refusal", err)
	}
	t.Logf("refused: %v", err)

	// The wrong key for the source.
	wrong := t.TempDir() + "/wrong.key"
	skey, _, _ := checkpoint.GenerateLogKey("test.example/log")
	if err := os.WriteFile(wrong, []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(context.Background(), MigrateConfig{From: src.dir, MySQL: testmysql.New(t), KeyFiles: []string{wrong}}); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("migrating with the wrong key: %v, want a refusal", err)
	}
}

// An interrupted migration leaves a database no log starts on; running it
// again finishes it.
func TestMigrateInterruptedResumes(t *testing.T) {
	src := newTestLog(t, nil)
	ids := src.fillKeyed("a", 2000)
	waitForCheckpoint(t, src, 2000)
	src.close()
	dsn := testmysql.New(t)

	ctx, cancel := context.WithCancel(context.Background())
	_, err := Migrate(ctx, MigrateConfig{From: src.dir, MySQL: dsn, Workers: 1, ProgressEvery: 10 * time.Millisecond,
		Progress: func(p MigrateProgress) {
			if p.Copied > 0 {
				cancel()
			}
		}})
	if err == nil {
		t.Fatal("Migrate finished though cancelled")
	}
	t.Logf("interrupted: %v", err)

	nl := &testLog{t: t, dir: t.TempDir(), cfg: Config{MySQL: dsn, Keys: src.cfg.Keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second}}
	nl.cfg.Dir = nl.dir
	if _, err := New(context.Background(), nl.cfg); err == nil || !strings.Contains(err.Error(), "has not finished") {
		t.Fatalf("a log started on a half-migrated database: %v, want a refusal", err)
	}

	res, err := Migrate(context.Background(), MigrateConfig{From: src.dir, MySQL: dsn})
	if err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	t.Logf("resumed from %d", res.Resumed)
	nl.start()
	defer nl.close()
	if r := nl.postEvent(`{"id":"a-1999","action":"migrate.test","n":1999}`); r.Index != ids["a-1999"] || !r.Duplicate {
		t.Errorf("retry after a resumed migration: %+v, want %d", r, ids["a-1999"])
	}
}

// A migrationSource is a POSIX log to migrate, closed: entries with ids
// "old-<i>", the last one under an explicit Idempotency-Key, and a receipt
// from before the migration.
type migrationSource struct {
	log     *testLog
	n       uint64
	ids     map[string]uint64
	keyed   eventResult
	cp      checkpoint.Checkpoint
	receipt checkpoint.Receipt
}

func newMigrationSource(t *testing.T, n int) migrationSource {
	t.Helper()
	src := migrationSource{log: newTestLog(t, nil), n: uint64(n)}
	src.ids = src.log.fillKeyed("old", n-1)
	src.keyed = src.log.postEvent(`{"action":"deploy"}`, "Idempotency-Key", "deploy-1")
	waitForCheckpoint(t, src.log, src.n)
	src.cp = src.log.signedCheckpoint()
	if src.cp.Size != src.n {
		t.Fatalf("old log size %d, want %d", src.cp.Size, n)
	}
	src.receipt = src.log.receipt(src.ids["old-1234"])
	if _, err := client.Verify(src.log.policy(), &src.receipt); err != nil {
		t.Fatalf("the old receipt does not verify on the old log: %v", err)
	}
	src.log.close()
	return src
}

// checkMigrated checks the log nl, started with the same key on the target
// of src's migration: same size, root and origin; retries of old events
// answered with their old indexes and nothing appended; new entries after
// the old ones; the old receipt verifies, its checkpoint is consistent with
// the new log's, and the new log's receipt for that entry holds the same
// leaf and verifies.
func (src migrationSource) checkMigrated(t *testing.T, nl *testLog) {
	t.Helper()
	ctx := context.Background()
	if s := nl.size(); s != src.n {
		t.Fatalf("new log size %d, want %d", s, src.n)
	}
	c := nl.signedCheckpoint()
	if c.Size != src.n || !bytes.Equal(c.Hash, src.cp.Hash) || c.Origin != src.cp.Origin {
		t.Fatalf("new log's checkpoint %d %x %q, the old one %d %x %q", c.Size, c.Hash, c.Origin, src.n, src.cp.Hash, src.cp.Origin)
	}

	// Retries of old events: their old indexes, no new entry.
	for _, id := range []string{"old-0", "old-255", "old-256", "old-1234", fmt.Sprintf("old-%d", src.n-2)} {
		var i int
		fmt.Sscanf(id, "old-%d", &i)
		r := nl.postEvent(fmt.Sprintf("{\"id\":%q,\"action\":\"migrate.test\",\"n\":%d}", id, i))
		if r.Index != src.ids[id] || !r.Duplicate {
			t.Errorf("retry of %s: %+v, want index %d, duplicate", id, r, src.ids[id])
		}
	}
	if r := nl.postEvent(`{"action":"deploy"}`, "Idempotency-Key", "deploy-1"); r.Index != src.keyed.Index || !r.Duplicate {
		t.Errorf("retry of the explicitly keyed event: %+v, want index %d, duplicate", r, src.keyed.Index)
	}
	if s := nl.size(); s != src.n {
		t.Fatalf("retries appended: size %d, want %d", s, src.n)
	}
	// New events follow the old ones.
	newIDs := nl.fillKeyed("new", 300)
	if newIDs["new-0"] != src.n {
		t.Errorf("first new entry at %d, want %d", newIDs["new-0"], src.n)
	}
	waitForCheckpoint(t, nl, src.n+300)

	// The old receipt verifies, and its checkpoint is consistent with the
	// new log's; the new log's receipt for the same entry holds the same
	// leaf.
	if _, err := client.Verify(nl.policy(), &src.receipt); err != nil {
		t.Errorf("the old receipt does not verify with the new log's policy: %v", err)
	}
	pr, err := checkpoint.ParseProof([]byte(src.receipt.Proof))
	if err != nil {
		t.Fatal(err)
	}
	rcp, _, err := checkpoint.Open(pr.Checkpoint, mustVerifier(t, nl.cfg.Keys.VKeys[0]))
	if err != nil {
		t.Fatal(err)
	}
	newCP := nl.signedCheckpoint()
	u, _ := url.Parse(nl.hs.URL + "/")
	f, err := tclient.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := tclient.NewProofBuilder(ctx, newCP.Size, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := pb.ConsistencyProof(ctx, rcp.Size, newCP.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, rcp.Size, newCP.Size, cons, rcp.Hash, newCP.Hash); err != nil {
		t.Errorf("the old receipt's checkpoint (size %d) is not consistent with the new log's (size %d): %v", rcp.Size, newCP.Size, err)
	}
	nr := nl.receipt(src.receipt.Index)
	if !bytes.Equal(nr.Leaf, src.receipt.Leaf) {
		t.Errorf("the new log's entry %d is not the old one's", src.receipt.Index)
	}
	if _, err := client.Verify(nl.policy(), &nr); err != nil {
		t.Errorf("the new log's receipt does not verify: %v", err)
	}

}
