package log

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tidemark/tidemark/internal/testmysql"
	"github.com/tidemark/tidemark/internal/tests3"
)

// fsckURL checks the log served at logURL with Tessera's fsck from
// $TIDEMARK_TOOLS.
func fsckURL(t *testing.T, logURL, pubFile string) {
	t.Helper()
	tools := os.Getenv("TIDEMARK_TOOLS")
	if tools == "" {
		tests3.Missing(t, "TIDEMARK_TOOLS is not set: fsck cannot run")
	}
	out, err := exec.Command(filepath.Join(tools, "fsck"), "--storage_url", logURL+"/",
		"--public_key", pubFile, "--N", "2", "--qps=0", "--ui=false", "--logtostderr").CombinedOutput()
	m := regexp.MustCompile(`Successfully fsck'd log with size (\d+)`).FindSubmatch(out)
	if err != nil || m == nil || bytes.Contains(out, []byte("fsck failed")) {
		t.Fatalf("fsck did not verify the log (%v):\n%s", err, out)
	}
	t.Logf("fsck: %s", m[0])
}

// A POSIX log with a few thousand keyed entries is migrated into an S3
// bucket with Object Lock (versitygw) and a MariaDB database, and a log
// started there with the same key: same tree, old receipts verify, retries
// of old events are answered with their old indexes, new entries follow
// the old ones, the copied tiles are locked, and fsck passes.
func TestMigratePOSIXToS3(t *testing.T) {
	src := newMigrationSource(t, 3001) // not a whole number of bundles
	old, n, oldCP := src.log, src.n, src.cp

	srv, s3cfg := s3ForTest(t, tests3.Options{ObjectLock: true}, time.Hour)
	dsn := testmysql.New(t)
	ctx := context.Background()
	res, err := Migrate(ctx, MigrateConfig{From: old.dir, MySQL: dsn, S3: &s3cfg, ProgressEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if res.Size != n || !bytes.Equal(res.Root, oldCP.Hash) || res.Resumed != 0 || res.AlreadyDone {
		t.Errorf("result %+v", res)
	}
	t.Logf("migrated %d entries into S3 in %s (%.0f entries/s)", n, res.Took.Round(time.Millisecond), float64(n)/res.Took.Seconds())
	again, err := Migrate(ctx, MigrateConfig{From: old.dir, MySQL: dsn, S3: &s3cfg})
	if err != nil || !again.AlreadyDone {
		t.Fatalf("second Migrate: %+v, %v", again, err)
	}

	// The source's signed checkpoint is the bucket's; full tiles and
	// bundles are locked, partial ones are not.
	sc := srv.Client()
	if got := getObject(t, ctx, sc, srv.Bucket, "logs/a/checkpoint", ""); !strings.HasPrefix(got, oldCP.Origin+"\n3001\n") {
		t.Errorf("checkpoint in the bucket:\n%s", got)
	}
	for _, key := range []string{"logs/a/tile/0/000", "logs/a/tile/entries/000", "logs/a/tile/entries/010"} {
		r, err := sc.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
		if err != nil {
			t.Errorf("GetObjectRetention(%s): %v", key, err)
			continue
		}
		if r.Retention.Mode != types.ObjectLockRetentionModeCompliance || aws.ToTime(r.Retention.RetainUntilDate).Before(time.Now().Add(50*time.Minute)) {
			t.Errorf("%s retention %+v, want COMPLIANCE for an hour", key, r.Retention)
		}
	}
	if _, err := sc.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(srv.Bucket), Key: aws.String("logs/a/tile/entries/011.p/185")}); err == nil {
		t.Error("the partial bundle is locked")
	}

	// A log with another key is refused on the migrated target.
	otherKeys, _, err := LoadKeys(t.TempDir(), nil, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{Dir: t.TempDir(), MySQL: dsn, S3: &s3cfg, Keys: otherKeys, CheckpointInterval: time.Second}); err == nil || !strings.Contains(err.Error(), "none of the keys given verifies") {
		t.Fatalf("a log with another key on the migrated target: %v, want a refusal", err)
	}

	// The log on S3 and MySQL, with the same key.
	nl := &testLog{t: t, dir: t.TempDir(), cfg: Config{MySQL: dsn, S3: &s3cfg, Keys: old.cfg.Keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second, RepublishInterval: time.Second}}
	nl.cfg.Dir = nl.dir
	nl.start()
	t.Cleanup(func() {
		if nl.s != nil {
			nl.close()
		}
	})
	src.checkMigrated(t, nl)
	fsckURL(t, nl.hs.URL, filepath.Join(old.dir, "log.pub"))

	// The log has moved on: migrating again is refused.
	nl.close()
	if _, err := Migrate(ctx, MigrateConfig{From: old.dir, MySQL: dsn, S3: &s3cfg}); err == nil || !strings.Contains(err.Error(), "more than the source's") {
		t.Errorf("migrating into the log that moved on: %v, want a refusal", err)
	}
}

// A bucket or database that holds another log is refused; an interrupted
// migration leaves a target no log starts on, and running it again
// finishes it.
func TestMigrateS3RefusesAnotherLogAndResumes(t *testing.T) {
	src := newTestLog(t, nil)
	ids := src.fillKeyed("a", 2000)
	waitForCheckpoint(t, src, 2000)
	src.close()
	_, base := s3ForTest(t, tests3.Options{ObjectLock: true}, time.Hour)
	ctx := context.Background()

	// Another log, with another key, on S3 under prefix "other".
	other := base
	other.Prefix = "other"
	otherDSN := testmysql.New(t)
	otherKeys, _, err := LoadKeys(t.TempDir(), nil, "other.example/log")
	if err != nil {
		t.Fatal(err)
	}
	ol := &testLog{t: t, dir: t.TempDir(), cfg: Config{MySQL: otherDSN, S3: &other, Keys: otherKeys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second}}
	ol.cfg.Dir = ol.dir
	ol.start()
	ol.fillKeyed("b", 10)
	waitForCheckpoint(t, ol, 10)
	ol.close()
	for _, tc := range []struct {
		name string
		dsn  string
		want string
	}{
		{"its bucket and database", otherDSN, "already holds another log"},
		{"its bucket, a new database", testmysql.New(t), "already holds another log"},
	} {
		_, err := Migrate(ctx, MigrateConfig{From: src.dir, MySQL: tc.dsn, S3: &other})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("migrating into %s: %v, want %q", tc.name, err, tc.want)
		} else {
			t.Logf("%s: refused: %v", tc.name, err)
		}
	}
	// Its database, a new prefix: the database's tree is not the source's.
	fresh := base
	fresh.Prefix = "fresh"
	if _, err := Migrate(ctx, MigrateConfig{From: src.dir, MySQL: otherDSN, S3: &fresh}); err == nil || !strings.Contains(err.Error(), "not a prefix") {
		t.Errorf("migrating into another log's database: %v, want a refusal", err)
	} else {
		t.Logf("refused: %v", err)
	}

	// Interrupted, then resumed.
	target := base
	target.Prefix = "mine"
	dsn := testmysql.New(t)
	cctx, cancel := context.WithCancel(ctx)
	_, err = Migrate(cctx, MigrateConfig{From: src.dir, MySQL: dsn, S3: &target, Workers: 1, ProgressEvery: 10 * time.Millisecond,
		Progress: func(p MigrateProgress) {
			// Integrated, not Copied: the bucket holds tiles only once
			// entries are integrated, and the refusal below needs them
			// (entries handed over but not yet integrated leave the
			// bucket empty on a busy machine, and an empty bucket is
			// rightly accepted).
			if p.Integrated > 0 {
				cancel()
			}
		}})
	if err == nil {
		t.Fatal("Migrate finished though cancelled")
	}
	t.Logf("interrupted: %v", err)
	nl := &testLog{t: t, dir: t.TempDir(), cfg: Config{MySQL: dsn, S3: &target, Keys: src.cfg.Keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second}}
	nl.cfg.Dir = nl.dir
	if _, err := New(ctx, nl.cfg); err == nil || !strings.Contains(err.Error(), "has not finished") {
		t.Fatalf("a log started on a half-migrated target: %v, want a refusal", err)
	}
	// The half-migrated bucket with a new database: refused.
	if _, err := Migrate(ctx, MigrateConfig{From: src.dir, MySQL: testmysql.New(t), S3: &target}); err == nil || !strings.Contains(err.Error(), "has no record of") {
		t.Errorf("migrating into a half-migrated bucket with a new database: %v, want a refusal", err)
	}
	res, err := Migrate(ctx, MigrateConfig{From: src.dir, MySQL: dsn, S3: &target, StallTimeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	t.Logf("resumed from %d", res.Resumed)
	nl.start()
	defer nl.close()
	if r := nl.postEvent(`{"id":"a-1999","action":"migrate.test","n":1999}`); r.Index != ids["a-1999"] || !r.Duplicate {
		t.Errorf("retry after a resumed migration: %+v, want %d", r, ids["a-1999"])
	}
	if r := nl.postEvent(`{"action":"after"}`); r.Index != 2000 {
		t.Errorf("first new entry at %d, want 2000", r.Index)
	}
}
