package log

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	tclient "github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/mysql"
	"golang.org/x/mod/sumdb/note"
)

// Migration copies a POSIX log (a data directory `tidemark log` made) into
// a MySQL database with Tessera's migration lifecycle
// (tessera.NewMigrationTarget): the entry bundles are copied, the target
// integrates them into a tree of its own, and the migration succeeds only
// if that tree's root is the root of the source's checkpoint, whose
// signature one of the log's keys verifies. Only then is the source
// checkpoint stored in the target, and a log started there (with the same
// key) publishes its first checkpoint over the same tree and builds its
// idempotency index from the migrated leaves.
//
// While a migration runs, and after one that failed, the database holds a
// marker (migratingMarker in tidemark_meta) that keeps a log from starting
// on it: the tree there is not yet the source's. Running the migration
// again resumes from what the target has integrated, after checking that
// it is a prefix of the source's tree. A database that holds anything else
// (another log's checkpoint, a tree that is not a prefix of the source's,
// more entries than the source) is refused before anything is written.

// MigrateConfig configures Migrate.
type MigrateConfig struct {
	// From is the data directory of the source log (tile/, checkpoint).
	From string
	// KeyFiles verify the source checkpoint: each holds a note signer key
	// (as `tidemark log --key` takes) or a verifier key. Default:
	// From/log.pub, else From/log.key.
	KeyFiles []string
	// MySQL is the DSN of the target database.
	MySQL string
	// S3, with MySQL, is a bucket to copy the tiles and bundles into, as
	// `tidemark log --s3-bucket` keeps them (MySQL then sequences).
	S3 *S3Config
	// Workers is how many entry bundles are copied at once (default 4).
	Workers uint
	// Progress, if set, is called about every ProgressEvery (default 1 s)
	// while entries are copied, and once at the end.
	Progress      func(MigrateProgress)
	ProgressEvery time.Duration
	// StallTimeout fails the migration when the target's tree has not
	// grown for this long (default 5 minutes).
	StallTimeout time.Duration
	Logger       *slog.Logger
}

// MigrateProgress is how far a migration is.
type MigrateProgress struct {
	Total      uint64        // entries in the source checkpoint
	Start      uint64        // entries the target held when this run began
	Copied     uint64        // entries read from the source and handed to the target
	Integrated uint64        // entries in the target's tree
	Elapsed    time.Duration // since this run began copying
}

// Rate is the entries integrated per second by this run.
func (p MigrateProgress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Integrated-p.Start) / p.Elapsed.Seconds()
}

// MigrateResult describes a migration that succeeded.
type MigrateResult struct {
	Origin string
	Size   uint64
	Root   []byte
	// Resumed is the size of the tree the target already held (0 for a
	// new database); AlreadyDone says it held the whole source tree.
	Resumed     uint64
	AlreadyDone bool
	Took        time.Duration
}

// migratingMarker, in tidemark_meta, says a migration into the database
// has not finished; its value is the source's tree size.
const migratingMarker = "migrating"

// migratingSourceMarker, beside it, is the source's fingerprint
// (sourceFingerprint).
const migratingSourceMarker = "migrating_source"

// Migrate copies the POSIX log in cfg.From into cfg.MySQL and verifies the
// copy (see Migration above).
func Migrate(ctx context.Context, cfg MigrateConfig) (MigrateResult, error) {
	start := time.Now()
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.From == "" {
		return MigrateResult{}, errors.New("no source: give the data directory of the log to migrate")
	}
	if cfg.MySQL == "" {
		return MigrateResult{}, errors.New("no target: give the DSN of the MySQL database to migrate into")
	}

	// A commitment log's events are in its payload store, which this
	// migration does not copy: its leaves would arrive without them.
	if b, err := os.ReadFile(filepath.Join(cfg.From, stateDir, leavesFile)); err == nil && strings.TrimSpace(string(b)) == LeavesCommitment {
		return MigrateResult{}, errors.New("the log in " + cfg.From + " is a commitment log (--leaves commitment): migrating it is not supported yet, since its events and salts (" +
			filepath.Join(stateDir, payloadsFile) + ") would not follow its leaves; keep it on files")
	}

	// The source: its checkpoint, verified.
	vkeys, err := migrationVerifierKeys(cfg.From, cfg.KeyFiles)
	if err != nil {
		return MigrateResult{}, err
	}
	src, srcSigned, srcTime, err := readSourceCheckpoint(cfg.From, vkeys)
	if err != nil {
		return MigrateResult{}, err
	}
	res := MigrateResult{Origin: src.Origin, Size: src.Size, Root: src.Hash}
	log := cfg.Logger.With("origin", src.Origin)

	leaf0, err := sourceFingerprint(cfg.From, src.Size)
	if err != nil {
		return res, err
	}

	// The target.
	var t migrationTarget
	if cfg.S3 != nil {
		t, err = openS3Target(ctx, cfg)
	} else {
		t, err = openMySQLTarget(ctx, cfg.MySQL)
	}
	if err != nil {
		return res, err
	}
	defer t.close()
	if err := t.lock(ctx); err != nil {
		return res, err
	}
	have, err := t.inspect(ctx, src, vkeys, cfg.From)
	if err != nil {
		return res, err
	}
	if err := t.checkFingerprint(ctx, leaf0); err != nil {
		return res, err
	}
	res.Resumed = have
	if have == src.Size {
		res.AlreadyDone = true
		log.Info("the target already holds the source's whole tree; checking it and storing the checkpoint", "size", src.Size)
	} else {
		if err := t.setMarker(ctx, src.Size, leaf0); err != nil {
			return res, err
		}
		if have > 0 {
			log.Info("resuming an earlier migration", "target_size", have, "source_size", src.Size)
		}
		if err := t.copyTree(ctx, cfg, src, have, log); err != nil {
			return res, err
		}
	}
	if err := t.finish(ctx, cfg, src, srcSigned, srcTime); err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	return res, nil
}

// migrationVerifierKeys reads the keys that verify the source checkpoint.
func migrationVerifierKeys(dir string, files []string) ([]string, error) {
	if len(files) == 0 {
		for _, name := range []string{"log.pub", KeyFile} {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err == nil {
				files = []string{p}
				break
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no key to verify the source checkpoint with: %s has no log.pub or %s; give the log's key (the file `tidemark log --key` was given) with --key", dir, KeyFile)
		}
	}
	var vkeys []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("couldn't read the key: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if strings.HasPrefix(k, "PRIVATE+KEY+") {
			if k, err = VerifierKey(k); err != nil {
				return nil, fmt.Errorf("key %s: %w", f, err)
			}
		} else if _, err := checkpoint.NewLogVerifier(k); err != nil {
			return nil, fmt.Errorf("key %s is neither a note signer key nor a log verifier key: %w", f, err)
		}
		vkeys = append(vkeys, k)
	}
	return vkeys, nil
}

func logVerifiers(vkeys []string) ([]note.Verifier, error) {
	var vs []note.Verifier
	for _, k := range vkeys {
		v, err := checkpoint.NewLogVerifier(k)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// readSourceCheckpoint reads and verifies DIR/checkpoint; it returns the
// checkpoint, its signed bytes and when it was written.
func readSourceCheckpoint(dir string, vkeys []string) (checkpoint.Checkpoint, []byte, time.Time, error) {
	path := filepath.Join(dir, layout.CheckpointPath)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return checkpoint.Checkpoint{}, nil, time.Time{}, fmt.Errorf("%s has no checkpoint: is it the data directory of a log (`tidemark log --data`)?", dir)
	}
	if err != nil {
		return checkpoint.Checkpoint{}, nil, time.Time{}, fmt.Errorf("couldn't read the source checkpoint: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return checkpoint.Checkpoint{}, nil, time.Time{}, err
	}
	vs, err := logVerifiers(vkeys)
	if err != nil {
		return checkpoint.Checkpoint{}, nil, time.Time{}, err
	}
	c, _, err := checkpoint.Open(b, vs...)
	if err != nil {
		return checkpoint.Checkpoint{}, nil, time.Time{}, fmt.Errorf("the source checkpoint %s does not verify with the key given (%w): is this the right key for this log?", path, err)
	}
	if c.Size == 0 {
		return checkpoint.Checkpoint{}, nil, time.Time{}, fmt.Errorf("the log in %s is empty: there is nothing to migrate (start the log on MySQL instead)", dir)
	}
	return c, b, fi.ModTime(), nil
}

// sourceBundles reads the source's entry bundles from its files: a partial
// bundle that has been completed since is read whole and trimmed, and
// every bundle must hold the entries asked for. A bundle that cannot be
// read is permanent: fail stops the migration at once rather than let
// Tessera's copier retry it for a minute.
func sourceBundles(dir string, copied *atomic.Uint64, fail func(error)) tclient.EntryBundleFetcherFunc {
	return func(ctx context.Context, idx uint64, p uint8) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, layout.EntriesPath(idx, p)))
		if errors.Is(err, fs.ErrNotExist) && p != 0 {
			b, err = os.ReadFile(filepath.Join(dir, layout.EntriesPath(idx, 0)))
		}
		if err != nil {
			err = fmt.Errorf("couldn't read the source's entry bundle %d: %w", idx, err)
			fail(err)
			return nil, err
		}
		n := int(p)
		if n == 0 {
			n = layout.EntryBundleWidth
		}
		t, ok := trimBundle(b, p)
		if !ok {
			err := fmt.Errorf("the source's entry bundle %d holds fewer than the %d entries the checkpoint implies: the source log is damaged", idx, n)
			fail(err)
			return nil, err
		}
		copied.Add(uint64(n))
		return t, nil
	}
}

// migrationTarget is where a migration copies to: a MySQL database
// (mysqlTarget), or an S3 bucket with a MySQL database (s3Target).
type migrationTarget interface {
	// lock keeps another migration out until close.
	lock(ctx context.Context) error
	// inspect refuses a target that holds anything but a prefix of the
	// source tree, or that a log runs on, and returns the size it holds.
	inspect(ctx context.Context, src checkpoint.Checkpoint, vkeys []string, from string) (uint64, error)
	// checkFingerprint refuses a target an unfinished migration of
	// another log left.
	checkFingerprint(ctx context.Context, leaf0 int64) error
	// setMarker marks a migration of a source of size entries under way.
	setMarker(ctx context.Context, size uint64, leaf0 int64) error
	// copyTree runs Tessera's migration from have to src.Size.
	copyTree(ctx context.Context, cfg MigrateConfig, src checkpoint.Checkpoint, have uint64, log *slog.Logger) error
	// finish verifies the copy, stores the source checkpoint, sets what
	// a log started there needs, and clears the marker.
	finish(ctx context.Context, cfg MigrateConfig, src checkpoint.Checkpoint, signed []byte, at time.Time) error
	close()
}

// targetDB is the MySQL database of a migration target: Tidemark's tables
// (the marker, the frontends, the idempotency index) and Tessera's.
type targetDB struct {
	db   *sql.DB
	name string
	conn *sql.Conn // holds the migration lock
}

// openTargetDB opens the database and creates Tidemark's tables.
func openTargetDB(ctx context.Context, dsn string) (targetDB, error) {
	db, err := openMySQL(ctx, dsn)
	if err != nil {
		return targetDB{}, err
	}
	c, _ := mysqldriver.ParseDSN(dsn)
	for _, q := range mysqlDialect.schema {
		if _, err := db.ExecContext(ctx, q); err != nil {
			db.Close()
			return targetDB{}, fmt.Errorf("couldn't create Tidemark's tables: %w", err)
		}
	}
	return targetDB{db: db, name: c.DBName}, nil
}

// mysqlTarget is a MySQL database being migrated into.
type mysqlTarget struct {
	targetDB
	st *mysql.Storage
}

func openMySQLTarget(ctx context.Context, dsn string) (*mysqlTarget, error) {
	tdb, err := openTargetDB(ctx, dsn)
	if err != nil {
		return nil, err
	}
	t := &mysqlTarget{targetDB: tdb}
	if err := applySchema(ctx, t.db, tesseraMySQLSchema); err != nil {
		t.db.Close()
		return nil, err
	}
	if t.st, err = mysql.New(ctx, t.db); err != nil {
		t.db.Close()
		return nil, fmt.Errorf("couldn't open Tessera's MySQL storage: %w", err)
	}
	return t, nil
}

func (t *targetDB) close() {
	if t.conn != nil {
		_, _ = t.conn.ExecContext(context.Background(), "SELECT RELEASE_LOCK(?)", t.lockName())
		t.conn.Close()
	}
	t.db.Close()
}

func (t *targetDB) lockName() string { return "tidemark_migrate." + t.name }

// lock takes a server lock for the duration, so that two migrations into
// one database do not run at once.
func (t *targetDB) lock(ctx context.Context) error {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return err
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", t.lockName()).Scan(&got); err != nil {
		conn.Close()
		return fmt.Errorf("couldn't take the migration lock: %w", err)
	}
	if got.Int64 != 1 {
		conn.Close()
		return fmt.Errorf("another `tidemark migrate` is running into the database %s: wait for it to finish", t.name)
	}
	t.conn = conn
	return nil
}

// inspect refuses a target that holds anything but a prefix of the source
// tree, or that a log is running on, and returns the size it holds.
func (t *mysqlTarget) inspect(ctx context.Context, src checkpoint.Checkpoint, vkeys []string, from string) (uint64, error) {
	// A checkpoint there must be this log's.
	var stored []byte
	err := t.db.QueryRowContext(ctx, "SELECT note FROM Checkpoint WHERE id = 0").Scan(&stored)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("couldn't read the target's checkpoint: %w", err)
	}
	if stored != nil {
		if err := checkCheckpointKeys(stored, vkeys); err != nil {
			origin, _, _ := strings.Cut(string(stored), "\n")
			return 0, fmt.Errorf("the database %s already holds another log (a checkpoint for origin %q that the source's key does not verify): refusing to migrate into it; give an empty database", t.name, origin)
		}
	}
	var size uint64
	var root []byte
	err = t.db.QueryRowContext(ctx, "SELECT size, root FROM TreeState WHERE id = 0").Scan(&size, &root)
	if errors.Is(err, sql.ErrNoRows) {
		size, root, err = 0, rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("couldn't read the target's tree state: %w", err)
	}
	if err := checkTargetTree(ctx, from, src, t.name, size, root); err != nil {
		return 0, err
	}
	// Nor may it hold a log on S3 (Tessera's AWS tables).
	if n, err := t.tableSize(ctx, "SELECT seq FROM IntCoord WHERE id = 0"); err != nil {
		return 0, fmt.Errorf("couldn't read the target's tables: %w", err)
	} else if n > 0 {
		return 0, fmt.Errorf("the database %s is the sequencer of a log of %d entries on S3: refusing to migrate into it; give an empty database", t.name, n)
	}
	return size, t.checkNoLogRunning(ctx)
}

// tableSize runs a query for one number, 0 when there is no row or no
// table.
func (t *targetDB) tableSize(ctx context.Context, q string) (uint64, error) {
	var n uint64
	err := t.db.QueryRowContext(ctx, q).Scan(&n)
	var me *mysqldriver.MySQLError
	if errors.Is(err, sql.ErrNoRows) || errors.As(err, &me) && me.Number == 1146 {
		return 0, nil
	}
	return n, err
}

// checkNoLogRunning refuses a database a log has been seen running on
// lately.
func (t *targetDB) checkNoLogRunning(ctx context.Context) error {
	var host string
	var ago int64
	err := t.db.QueryRowContext(ctx, "SELECT host, "+mysqlDialect.now+" - seen FROM tidemark_frontends ORDER BY seen DESC LIMIT 1").Scan(&host, &ago)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("couldn't read the target's frontends: %w", err)
	}
	if err == nil && time.Duration(ago)*time.Millisecond < frontendLease {
		return fmt.Errorf("a log is running on the database %s (a frontend on %s was seen %s ago): stop every `tidemark log` on it before migrating", t.name, host, (time.Duration(ago) * time.Millisecond).Round(time.Second))
	}
	return nil
}

// checkPrefix checks that (size, root) is the source tree's at size, with
// a consistency proof from the source's tiles to its verified checkpoint.
func checkPrefix(ctx context.Context, dir string, src checkpoint.Checkpoint, size uint64, root []byte) error {
	if size == src.Size {
		if !bytes.Equal(root, src.Hash) {
			return fmt.Errorf("root %x, the source's %x", root, src.Hash)
		}
		return nil
	}
	f := tclient.FileFetcher{Root: dir}
	pb, err := tclient.NewProofBuilder(ctx, src.Size, f.ReadTile)
	if err != nil {
		return fmt.Errorf("couldn't read the source's tiles: %w", err)
	}
	p, err := pb.ConsistencyProof(ctx, size, src.Size)
	if err != nil {
		return fmt.Errorf("couldn't make a consistency proof from the source's tiles: %w", err)
	}
	return proof.VerifyConsistency(rfc6962.DefaultHasher, size, src.Size, p, root, src.Hash)
}

// setMarker records that a migration into the database is under way,
// and of which log (leaf0, the source's fingerprint).
func (t *targetDB) setMarker(ctx context.Context, size uint64, leaf0 int64) error {
	_, err := t.db.ExecContext(ctx, "REPLACE INTO tidemark_meta (name, value) VALUES (?, ?), (?, ?)", migratingMarker, int64(size), migratingSourceMarker, leaf0)
	if err != nil {
		return fmt.Errorf("couldn't mark the migration in the target: %w", err)
	}
	return nil
}

// marker returns the migration marker's size (ok false when there is
// none).
func (t *targetDB) marker(ctx context.Context) (size uint64, ok bool, err error) {
	err = t.db.QueryRowContext(ctx, "SELECT value FROM tidemark_meta WHERE name = ?", migratingMarker).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return size, err == nil, err
}

// checkFingerprint refuses a database where an unfinished migration of
// another log left its marker: the bundles it copied are not this log's.
func (t *targetDB) checkFingerprint(ctx context.Context, leaf0 int64) error {
	var v int64
	err := t.db.QueryRowContext(ctx, "SELECT value FROM tidemark_meta WHERE name = ?", migratingSourceMarker).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("couldn't read the target's migration state: %w", err)
	}
	if v != leaf0 {
		return fmt.Errorf("the database %s holds an unfinished migration of another log (its first entry is not the source's): refusing to migrate into it; give an empty database", t.name)
	}
	return nil
}

// sourceFingerprint is the first 8 bytes of the leaf hash of the source's
// first entry, as a number: it tells an unfinished migration of this log
// from another's.
func sourceFingerprint(dir string, size uint64) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, layout.EntriesPath(0, 0)))
	if errors.Is(err, fs.ErrNotExist) && size < layout.EntryBundleWidth {
		b, err = os.ReadFile(filepath.Join(dir, layout.EntriesPath(0, uint8(size))))
	}
	if err != nil {
		return 0, fmt.Errorf("couldn't read the source's first entry bundle: %w", err)
	}
	first, ok := trimBundle(b, 1)
	if !ok || len(first) < 2 {
		return 0, errors.New("the source's first entry bundle is damaged")
	}
	h := rfc6962.DefaultHasher.HashLeaf(first[2:])
	return int64(binary.BigEndian.Uint64(h[:8])), nil
}

// copyTree runs Tessera's migration from have to src.Size.
func (t *mysqlTarget) copyTree(ctx context.Context, cfg MigrateConfig, src checkpoint.Checkpoint, have uint64, log *slog.Logger) error {
	// Bundles above the integrated tree are an earlier run's, copied but
	// not integrated: they are copied again. Deleting them keeps the
	// integration from taking one that might not be this source's.
	if _, err := t.db.ExecContext(ctx, "DELETE FROM TiledLeaves WHERE tile_index >= ?", have/layout.EntryBundleWidth); err != nil {
		return fmt.Errorf("couldn't clear the bundles of an earlier run: %w", err)
	}
	return runMigration(ctx, cfg, src, have, t.st, t.st.IntegratedSize, log)
}

// runMigration runs Tessera's migration into driver from have to
// src.Size, reporting progress (integrated reads the target's tree size)
// and failing when the tree stops growing.
func runMigration(ctx context.Context, cfg MigrateConfig, src checkpoint.Checkpoint, have uint64, driver tessera.Driver, integrated func(context.Context) (uint64, error), log *slog.Logger) error {
	mt, err := tessera.NewMigrationTarget(ctx, driver, tessera.NewMigrationOptions())
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var failOnce sync.Once
	var failed error
	fail := func(err error) {
		failOnce.Do(func() {
			failed = err
			cancel()
		})
	}
	var copied atomic.Uint64
	copied.Store(have)
	began := time.Now()
	progress := func() MigrateProgress {
		n, _ := integrated(ctx)
		return MigrateProgress{Total: src.Size, Start: have, Copied: copied.Load(), Integrated: n, Elapsed: time.Since(began)}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(cfg.ProgressEvery)
		defer tick.Stop()
		last, lastMoved := have, time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			p := progress()
			if cfg.Progress != nil {
				cfg.Progress(p)
			}
			if p.Integrated != last {
				last, lastMoved = p.Integrated, time.Now()
			} else if time.Since(lastMoved) > cfg.StallTimeout {
				fail(fmt.Errorf("the target's tree has stayed at %d of %d entries for %s: giving up (run the migration again to resume)", last, src.Size, cfg.StallTimeout))
			}
		}
	}()
	err = mt.Migrate(cctx, cfg.Workers, src.Size, src.Hash, sourceBundles(cfg.From, &copied, fail))
	close(done)
	wg.Wait()
	if failed != nil {
		return fmt.Errorf("migration failed: %w", failed)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("migration interrupted (run it again to resume): %w", ctx.Err())
		}
		return fmt.Errorf("MIGRATION FAILED, the target is not a copy of the source: %w", err)
	}
	if cfg.Progress != nil {
		cfg.Progress(progress())
	}
	log.Info("entries copied and integrated", "size", src.Size, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// finish checks the target's tree against the source checkpoint once
// more, repairs what Tessera's migration leaves for a log to start on,
// stores the source checkpoint, and clears the marker.
func (t *mysqlTarget) finish(ctx context.Context, _ MigrateConfig, src checkpoint.Checkpoint, signed []byte, at time.Time) error {
	var size uint64
	var root []byte
	if err := t.db.QueryRowContext(ctx, "SELECT size, root FROM TreeState WHERE id = 0").Scan(&size, &root); err != nil {
		return fmt.Errorf("couldn't read the target's tree state: %w", err)
	}
	if size != src.Size || !bytes.Equal(root, src.Hash) {
		return fmt.Errorf("MIGRATION FAILED: the target's tree (size %d, root %s) is not the source checkpoint's (size %d, root %s)",
			size, base64.StdEncoding.EncodeToString(root), src.Size, base64.StdEncoding.EncodeToString(src.Hash))
	}
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Tessera v1.0.4's MySQL migration stores a full bundle with size 0
	// (its partial width), which its reads then refuse as too short; the
	// appender stores 256. Nothing else writes 0.
	if _, err := tx.ExecContext(ctx, "UPDATE TiledLeaves SET size = ? WHERE size = 0", layout.EntryBundleWidth); err != nil {
		return fmt.Errorf("couldn't repair the migrated bundles' sizes: %w", err)
	}
	// Every bundle of the tree must be there and readable.
	var bundles, short int64
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(size < ? AND tile_index < ?), 0) FROM TiledLeaves WHERE tile_index <= ?",
		layout.EntryBundleWidth, src.Size/layout.EntryBundleWidth, (src.Size-1)/layout.EntryBundleWidth).Scan(&bundles, &short); err != nil {
		return fmt.Errorf("couldn't count the migrated bundles: %w", err)
	}
	if want := int64((src.Size + layout.EntryBundleWidth - 1) / layout.EntryBundleWidth); bundles != want || short != 0 {
		return fmt.Errorf("MIGRATION FAILED: the target holds %d entry bundles (%d of them short) for %d entries, want %d", bundles, short, src.Size, want)
	}
	// The source checkpoint, unless the target has one as large already
	// (a migration finished earlier): a log started here checks its key
	// against it, and publishes its own at once (published_at is the
	// source's, older than any checkpoint interval).
	var stored []byte
	err = tx.QueryRowContext(ctx, "SELECT note FROM Checkpoint WHERE id = 0 FOR UPDATE").Scan(&stored)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("couldn't read the target's checkpoint: %w", err)
	}
	if storedSize(stored) < src.Size {
		if _, err := tx.ExecContext(ctx, "REPLACE INTO Checkpoint (id, note, published_at) VALUES (0, ?, ?)", signed, at.UnixMilli()); err != nil {
			return fmt.Errorf("couldn't store the checkpoint: %w", err)
		}
	}
	// The idempotency index is built from the leaves when the log first
	// starts: one marked built before (an empty log started here) is
	// built again; Build keeps the rows it has.
	if _, err := tx.ExecContext(ctx, "DELETE FROM tidemark_meta WHERE name IN ('built', ?, ?)", migratingMarker, migratingSourceMarker); err != nil {
		return fmt.Errorf("couldn't clear the migration marker: %w", err)
	}
	return tx.Commit()
}

// storedSize is the size of a stored checkpoint (0 for none or one that
// does not parse).
func storedSize(signed []byte) uint64 {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return 0
	}
	c, err := checkpoint.Parse(signed[:i+1])
	if err != nil {
		return 0
	}
	return c.Size
}

// checkNoMigrationPending refuses to start a log on a database that a
// migration has not finished copying into.
func checkNoMigrationPending(ctx context.Context, db *sql.DB) error {
	var size int64
	err := db.QueryRowContext(ctx, "SELECT value FROM tidemark_meta WHERE name = ?", migratingMarker).Scan(&size)
	var me *mysqldriver.MySQLError
	switch {
	case errors.Is(err, sql.ErrNoRows), errors.As(err, &me) && me.Number == 1146: // no such table: a new database
		return nil
	case err != nil:
		return fmt.Errorf("couldn't read the database's migration state: %w", err)
	}
	return fmt.Errorf("a migration of a log of %d entries into this database has not finished: its tree is not yet that log's. Run `tidemark migrate` again (it resumes), and start the log once it succeeds", size)
}

// checkTargetTree refuses a target database (name) whose tree of size
// entries and root is not a prefix of the source's: an interrupted
// migration of this log may resume, nothing else.
func checkTargetTree(ctx context.Context, from string, src checkpoint.Checkpoint, name string, size uint64, root []byte) error {
	if size > src.Size {
		return fmt.Errorf("the database %s already holds a tree of %d entries, more than the source's %d: it is not an interrupted migration of this log (has a log taken entries there since?); refusing to migrate into it", name, size, src.Size)
	}
	if size > 0 {
		if err := checkPrefix(ctx, from, src, size, root); err != nil {
			return fmt.Errorf("the database %s already holds a tree of %d entries that is not a prefix of the source log (%v): it holds another log; refusing to migrate into it", name, size, err)
		}
	}
	return nil
}
