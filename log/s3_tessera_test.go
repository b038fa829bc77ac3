package log

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/go-sql-driver/mysql"
	"github.com/tidemark/tidemark/internal/tests3"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	tesseraaws "github.com/transparency-dev/tessera/storage/aws"
	"golang.org/x/mod/sumdb/note"
)

// testMySQLAddr is the MySQL (MariaDB) server the AWS driver's tests use;
// TIDEMARK_TEST_MYSQL overrides it (user root, empty password).
func testMySQLAddr() string {
	if a := os.Getenv("TIDEMARK_TEST_MYSQL"); a != "" {
		return a
	}
	return "127.0.0.1:3306"
}

// mysqlForTest creates a database for the test, dropped at its end, and
// returns its DSN. It skips the test when the server cannot be reached
// (fails it under CI=true). Tessera's sequencer stores no DATETIME, so the
// DSN needs no parseTime.
func mysqlForTest(t *testing.T) string {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", testMySQLAddr()
	cfg.Timeout = 5 * time.Second
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		tests3.Missing(t, fmt.Sprintf("no MySQL server at %s: %v", cfg.Addr, err))
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := "tidemark_s3_" + hex.EncodeToString(r[:])
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP DATABASE " + name); err != nil {
			t.Errorf("dropping database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// Tessera's AWS driver, configured by S3Config with retention, runs a log
// on versitygw and MariaDB: the tree its tiles and bundles hold matches
// the signed checkpoint, full tiles and bundles are locked, and its
// garbage collection of partials works under Object Lock.
func TestS3TesseraDriver(t *testing.T) {
	const n = 1000
	dsn := mysqlForTest(t)
	srv, cfg := s3ForTest(t, tests3.Options{ObjectLock: true}, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before the server stops: cleanups run last in, first out

	tc, err := cfg.tesseraConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tc.DSN = dsn
	driver, err := tesseraaws.New(ctx, tc)
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "tidemark.test/s3")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(64, 50*time.Millisecond).
		WithCheckpointInterval(time.Second).
		WithGarbageCollectionInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}

	// Appended from a few goroutines, so that batches are small and many
	// partial tiles and bundles are written (and then collected).
	entries := make([][]byte, n)
	indexes := make([]uint64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				entries[i] = fmt.Appendf(nil, "entry %d", i)
				idx, err := appender.Add(ctx, tessera.NewEntry(entries[i]))()
				if err != nil {
					errs <- err
					return
				}
				indexes[i] = idx.Index
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	byIndex := make(map[uint64][]byte, n)
	for i, idx := range indexes {
		if _, dup := byIndex[idx]; dup || idx >= n {
			t.Fatalf("entry %d got index %d (duplicate or out of range)", i, idx)
		}
		byIndex[idx] = entries[i]
	}

	// Wait for a checkpoint that covers them all.
	fetchCP := func(ctx context.Context) ([]byte, error) { return reader.ReadCheckpoint(ctx) }
	var size uint64
	var root []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		cp, _, _, err := client.FetchCheckpoint(ctx, fetchCP, verifier, verifier.Name())
		if err == nil && cp.Size >= n {
			size, root = cp.Size, cp.Hash
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size %d after 30s (last: %v, %v)", n, cp, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if size != n {
		t.Fatalf("checkpoint size %d, want %d", size, n)
	}

	// Recompute the root from the entry bundles.
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	cr := rf.NewEmptyRange(0)
	for b := uint64(0); b*layout.EntryBundleWidth < size; b++ {
		bundle, err := client.GetEntryBundle(ctx, reader.ReadEntryBundle, b, size)
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range bundle.Entries {
			idx := b*layout.EntryBundleWidth + uint64(j)
			if string(e) != string(byIndex[idx]) {
				t.Fatalf("entry %d reads %q, want %q", idx, e, byIndex[idx])
			}
			if err := cr.Append(rfc6962.DefaultHasher.HashLeaf(e), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if cr.End() != size {
		t.Fatalf("bundles hold %d entries, checkpoint says %d", cr.End(), size)
	}
	got, err := cr.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(root) {
		t.Fatalf("root from bundles %x, checkpoint %x", got, root)
	}

	// Inclusion proofs from the tiles.
	pb, err := client.NewProofBuilder(ctx, size, reader.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint64{0, 1, 255, 256, 511, 512, 767, 768, 998, 999} {
		p, err := pb.InclusionProof(ctx, idx)
		if err != nil {
			t.Fatalf("inclusion proof of %d: %v", idx, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, size, rfc6962.DefaultHasher.HashLeaf(byIndex[idx]), p, root); err != nil {
			t.Errorf("inclusion proof of %d: %v", idx, err)
		}
	}

	// Full tiles and bundles are locked, the checkpoint and the partials
	// are not.
	c := srv.Client()
	retention := func(key string) types.ObjectLockRetentionMode {
		out, err := c.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
		if err != nil {
			return ""
		}
		return out.Retention.Mode
	}
	for _, key := range []string{"logs/a/tile/0/000", "logs/a/tile/entries/000", "logs/a/tile/0/002"} {
		if m := retention(key); m != types.ObjectLockRetentionModeCompliance {
			t.Errorf("%s: retention %q, want COMPLIANCE", key, m)
		}
	}
	for _, key := range []string{"logs/a/checkpoint", "logs/a/tile/0/003.p/232", "logs/a/tile/entries/003.p/232", "logs/a/tile/1/000.p/3"} {
		if m := retention(key); m != "" {
			t.Errorf("%s: retention %q, want none", key, m)
		}
	}

	// GC: once the checkpoint is published, the partials of full bundles
	// get delete markers (the driver deletes without version IDs), and
	// nothing else does.
	// The bundles 0-2 and the tiles above them at level 0 are full; bundle
	// 3 and tile 1/000 are not, and keep their partials.
	collectable := regexp.MustCompile(`^logs/a/tile/(0|entries)/00[012]\.p/`)
	deadline = time.Now().Add(20 * time.Second)
	for {
		partials, markers := 0, 0
		var markedFull []string
		var token, vtoken *string
		for {
			out, err := c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(srv.Bucket), Prefix: aws.String("logs/a/tile/"), KeyMarker: token, VersionIdMarker: vtoken})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range out.Versions {
				if collectable.MatchString(aws.ToString(v.Key)) {
					partials++
				}
			}
			for _, m := range out.DeleteMarkers {
				markers++
				if !strings.Contains(aws.ToString(m.Key), ".p/") {
					markedFull = append(markedFull, aws.ToString(m.Key))
				}
			}
			if !aws.ToBool(out.IsTruncated) {
				break
			}
			token, vtoken = out.NextKeyMarker, out.NextVersionIdMarker
		}
		if len(markedFull) > 0 {
			t.Fatalf("delete markers on full tiles or bundles: %v", markedFull)
		}
		if partials > 0 && markers >= partials {
			t.Logf("GC: %d partial versions of full tiles and bundles, all behind delete markers (%d)", partials, markers)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC: %d partial versions of full tiles and bundles, %d delete markers after 20s", partials, markers)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
