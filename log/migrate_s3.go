package log

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	tesseraaws "github.com/transparency-dev/tessera/storage/aws"
)

// Migrating into S3 and MySQL (MigrateConfig.S3): Tessera's AWS driver in
// migration mode (Storage.MigrationWriter) writes the copied entry bundles
// to the bucket, as the appender would (a full bundle at its full path, the
// right edge's at its partial one), reads them back from the bucket to hash
// them, writes the tiles there, and keeps the integrated tree's size and
// root in its IntCoord table in MySQL. The bucket is written through the
// same S3 options as the log's, so with S3Config.Retention the tiles and
// bundles are under Object Lock as the log's would be.
//
// What Tessera v1.0.4's AWS migration leaves for a log to start on, and
// finish repairs:
//   - the sequencer's next index (SeqCoord.next) stays 0 while the tree
//     (IntCoord.seq) is at the migrated size: the appender's pushback check
//     (next - size, unsigned) then wraps around and refuses every entry
//     with ErrPushbackIntegration. finish sets next to the size, so that
//     the first entry appended is numbered after the migrated ones;
//   - it writes no checkpoint: finish writes the source's signed one to
//     the checkpoint object, so that a log started there with another key
//     is refused, and publishes its own at once (PubCoord says none was
//     published);
//   - the garbage collector of partial tiles and bundles (GCCoord) starts
//     at 0: the log would walk every migrated bundle, 100 a minute, with a
//     list and a delete request for the bundle and for its level-0 tile,
//     for partials the migration never wrote (it writes full bundles, and
//     partial tiles only where an integration pass of 300 bundles ends,
//     which stay). finish moves it to the migrated size.
//
// The database holds the migration marker (tidemark_meta) as on MySQL
// alone, so no log starts on a half-migrated pair, and the lock against
// two migrations at once.

// s3Target is an S3 bucket (under a prefix) and the MySQL database that
// sequences for it, being migrated into.
type s3Target struct {
	targetDB
	cfg    S3Config
	driver tessera.Driver
	client *s3.Client
}

func openS3Target(ctx context.Context, cfg MigrateConfig) (*s3Target, error) {
	tdb, err := openTargetDB(ctx, cfg.MySQL)
	if err != nil {
		return nil, err
	}
	t := &s3Target{targetDB: tdb, cfg: *cfg.S3}
	tc, err := cfg.S3.tesseraConfig(ctx)
	if err != nil {
		t.db.Close()
		return nil, fmt.Errorf("--s3-bucket %s: %w", cfg.S3.Bucket, err)
	}
	tc.DSN = cfg.MySQL
	if t.driver, err = tesseraaws.New(ctx, tc); err != nil {
		t.db.Close()
		return nil, fmt.Errorf("couldn't open Tessera's AWS storage: %w", err)
	}
	if t.client, err = cfg.S3.s3Client(ctx); err != nil {
		t.db.Close()
		return nil, err
	}
	return t, nil
}

// where names the target in messages.
func (t *s3Target) where() string {
	if t.cfg.Prefix == "" {
		return fmt.Sprintf("the bucket %s", t.cfg.Bucket)
	}
	return fmt.Sprintf("the bucket %s (prefix %s)", t.cfg.Bucket, t.cfg.Prefix)
}

// key is the object key of a log path, under the prefix (as Tessera's
// driver joins them).
func (t *s3Target) key(p string) string {
	if t.cfg.Prefix == "" {
		return p
	}
	return path.Join(t.cfg.Prefix, p)
}

// get reads an object; nil, nil when there is none.
func (t *s3Target) get(ctx context.Context, p string) ([]byte, error) {
	out, err := t.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(t.cfg.Bucket), Key: aws.String(t.key(p))})
	var nsk *s3types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// intCoord is the AWS driver's integrated tree (0 and the empty root
// before its tables exist).
func (t *s3Target) intCoord(ctx context.Context) (uint64, []byte, error) {
	var size uint64
	var root []byte
	err := t.db.QueryRowContext(ctx, "SELECT seq, rootHash FROM IntCoord WHERE id = 0").Scan(&size, &root)
	var me *mysqldriver.MySQLError
	if errors.Is(err, sql.ErrNoRows) || errors.As(err, &me) && me.Number == 1146 { // no row, no table
		return 0, rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	return size, root, err
}

func (t *s3Target) inspect(ctx context.Context, src checkpoint.Checkpoint, vkeys []string, from string) (uint64, error) {
	// A log on MySQL alone is not a target for S3.
	if n, err := t.tableSize(ctx, "SELECT size FROM TreeState WHERE id = 0"); err != nil {
		return 0, fmt.Errorf("couldn't read the target's tables: %w", err)
	} else if n > 0 {
		return 0, fmt.Errorf("the database %s holds a log of %d entries on MySQL alone: refusing to migrate into it; give an empty database", t.name, n)
	}
	// A checkpoint in the bucket must be this log's, at a size of its
	// tree.
	stored, err := t.get(ctx, layout.CheckpointPath)
	if err != nil {
		return 0, fmt.Errorf("couldn't read the checkpoint in %s: %w", t.where(), err)
	}
	if stored != nil {
		if err := checkCheckpointKeys(stored, vkeys); err != nil {
			origin, _, _ := strings.Cut(string(stored), "\n")
			return 0, fmt.Errorf("%s already holds another log (a checkpoint for origin %q that the source's key does not verify): refusing to migrate into it; give an empty bucket or another prefix", t.where(), origin)
		}
		c, _ := checkpoint.Parse(stored[:bytes.Index(stored, []byte("\n\n"))+1])
		if c.Size > src.Size {
			return 0, fmt.Errorf("%s already holds a log of %d entries, more than the source's %d (has a log taken entries there since?): refusing to migrate into it", t.where(), c.Size, src.Size)
		}
		if err := checkPrefix(ctx, from, src, c.Size, c.Hash); c.Size > 0 && err != nil {
			return 0, fmt.Errorf("%s already holds a tree of %d entries that is not a prefix of the source log (%v): it holds another log; refusing to migrate into it", t.where(), c.Size, err)
		}
	}
	size, root, err := t.intCoord(ctx)
	if err != nil {
		return 0, fmt.Errorf("couldn't read the target's tree state: %w", err)
	}
	if err := checkTargetTree(ctx, from, src, t.name, size, root); err != nil {
		return 0, err
	}
	if next, err := t.tableSize(ctx, "SELECT next FROM SeqCoord WHERE id = 0"); err != nil {
		return 0, fmt.Errorf("couldn't read the target's sequencer: %w", err)
	} else if next > size {
		return 0, fmt.Errorf("the database %s has sequenced %d entries and integrated %d: a log has taken entries there; refusing to migrate into it", t.name, next, size)
	}
	// The bucket and the database must go together: a fresh database
	// with a bucket that holds a log's objects, or a database with a tree
	// whose bundles the bucket does not hold, is refused.
	_, marked, err := t.marker(ctx)
	if err != nil {
		return 0, fmt.Errorf("couldn't read the target's migration state: %w", err)
	}
	if size == 0 && !marked {
		out, err := t.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(t.cfg.Bucket), Prefix: aws.String(t.key("tile") + "/"), MaxKeys: aws.Int32(1)})
		if err != nil {
			return 0, fmt.Errorf("couldn't list %s: %w", t.where(), err)
		}
		if len(out.Contents) > 0 || stored != nil {
			return 0, fmt.Errorf("%s already holds a log's objects (%s) that the database %s has no record of: refusing to migrate into it; give an empty bucket (or another prefix) with an empty database, or the database that goes with the bucket", t.where(), t.key("tile/..."), t.name)
		}
	}
	if size > 0 {
		last := (size - 1) / layout.EntryBundleWidth
		p := layout.PartialTileSize(0, last, size)
		if b, err := t.get(ctx, layout.EntriesPath(last, p)); err != nil {
			return 0, fmt.Errorf("couldn't read %s: %w", t.where(), err)
		} else if b == nil {
			return 0, fmt.Errorf("the database %s holds a tree of %d entries, but %s has no entry bundle %d for it: is this the bucket that goes with the database? Refusing to migrate into it", t.name, size, t.where(), last)
		}
	}
	return size, t.checkNoLogRunning(ctx)
}

func (t *s3Target) copyTree(ctx context.Context, cfg MigrateConfig, src checkpoint.Checkpoint, have uint64, log *slog.Logger) error {
	// Bundles above the integrated tree, an earlier run's, are this
	// source's (checkFingerprint): Tessera writes them only if absent, and
	// accepts an identical one.
	return runMigration(ctx, cfg, src, have, t.driver, func(ctx context.Context) (uint64, error) {
		n, _, err := t.intCoord(ctx)
		return n, err
	}, log)
}

func (t *s3Target) finish(ctx context.Context, cfg MigrateConfig, src checkpoint.Checkpoint, signed []byte, at time.Time) error {
	size, root, err := t.intCoord(ctx)
	if err != nil {
		return fmt.Errorf("couldn't read the target's tree state: %w", err)
	}
	if size != src.Size || !bytes.Equal(root, src.Hash) {
		return fmt.Errorf("MIGRATION FAILED: the target's tree (size %d, root %x) is not the source checkpoint's (size %d, root %x)", size, root, src.Size, src.Hash)
	}
	// Every bundle, read back through the bucket, is the source's.
	if err := t.checkBundles(ctx, cfg, src.Size); err != nil {
		return err
	}
	// The source checkpoint, unless the bucket has one as large already.
	stored, err := t.get(ctx, layout.CheckpointPath)
	if err != nil {
		return fmt.Errorf("couldn't read the checkpoint in %s: %w", t.where(), err)
	}
	if storedSize(stored) < src.Size {
		_, err := t.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(t.cfg.Bucket), Key: aws.String(t.cfg.checkpointKey()), Body: bytes.NewReader(signed),
			ContentType: aws.String("text/plain; charset=utf-8"), CacheControl: aws.String("no-cache"),
		})
		if err != nil {
			return fmt.Errorf("couldn't store the checkpoint in %s: %w", t.where(), err)
		}
	}
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// The sequencer numbers the next entry after the migrated ones, and
	// the garbage collector starts there (see above).
	if _, err := tx.ExecContext(ctx, "UPDATE SeqCoord SET next = ? WHERE id = 0 AND next < ?", src.Size, src.Size); err != nil {
		return fmt.Errorf("couldn't set the sequencer's next index: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE GCCoord SET fromSize = ? WHERE id = 0 AND fromSize < ?", src.Size, src.Size); err != nil {
		return fmt.Errorf("couldn't set the garbage collector's start: %w", err)
	}
	// The idempotency index is built from the leaves when the log first
	// starts (see mysqlTarget.finish).
	if _, err := tx.ExecContext(ctx, "DELETE FROM tidemark_meta WHERE name IN ('built', ?, ?)", migratingMarker, migratingSourceMarker); err != nil {
		return fmt.Errorf("couldn't clear the migration marker: %w", err)
	}
	return tx.Commit()
}

// checkBundles reads every entry bundle of a tree of size entries back
// from the bucket, where a log started there reads it, and compares it with
// the source's.
func (t *s3Target) checkBundles(ctx context.Context, cfg MigrateConfig, size uint64) error {
	n := (size + layout.EntryBundleWidth - 1) / layout.EntryBundleWidth
	work := make(chan uint64)
	var mu sync.Mutex
	var first error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
		}
	}
	var wg sync.WaitGroup
	for range max(cfg.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p := layout.PartialTileSize(0, i, size)
				want, err := os.ReadFile(filepath.Join(cfg.From, layout.EntriesPath(i, p)))
				if errors.Is(err, os.ErrNotExist) && p != 0 {
					want, err = os.ReadFile(filepath.Join(cfg.From, layout.EntriesPath(i, 0)))
				}
				if err == nil {
					var ok bool
					if want, ok = trimBundle(want, p); !ok {
						err = fmt.Errorf("the source's entry bundle %d is short", i)
					}
				}
				if err != nil {
					fail(fmt.Errorf("couldn't read the source's entry bundle %d: %w", i, err))
					continue
				}
				got, err := t.get(ctx, layout.EntriesPath(i, p))
				switch {
				case err != nil:
					fail(fmt.Errorf("couldn't read entry bundle %d back from %s: %w", i, t.where(), err))
				case got == nil:
					fail(fmt.Errorf("MIGRATION FAILED: %s has no entry bundle %d (%s)", t.where(), i, t.key(layout.EntriesPath(i, p))))
				case !bytes.Equal(got, want):
					fail(fmt.Errorf("MIGRATION FAILED: entry bundle %d in %s (%s, %d bytes) is not the source's (%d bytes)", i, t.where(), t.key(layout.EntriesPath(i, p)), len(got), len(want)))
				}
			}
		}()
	}
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
