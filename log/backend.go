package log

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	tesseraaws "github.com/transparency-dev/tessera/storage/aws"
	"github.com/transparency-dev/tessera/storage/mysql"
	"github.com/transparency-dev/tessera/storage/posix"
)

// The log keeps its tree in one of three places (Tessera's drivers):
//
//   - POSIX (the default): tiles, bundles and checkpoint are files in
//     Config.Dir, laid out as tlog-tiles serves them; one process.
//   - MySQL (Config.MySQL): everything in a MySQL-compatible database,
//     which any number of frontends share; the tree-state row lock orders
//     their batches.
//   - S3 (Config.S3, with Config.MySQL): tiles and bundles are objects in
//     an S3-compatible bucket, sequencing is in MySQL.
//
// The idempotency index follows: SQLite in Config.Dir on POSIX, the MySQL
// database otherwise, so that every frontend sees every key.

// backend is the storage a Server runs on.
type backend struct {
	kind string // "posix", "mysql" or "s3"
	// driver is Tessera's.
	driver tessera.Driver
	// db is the MySQL database (nil on POSIX).
	db *sql.DB
	// checkpoint reads the stored checkpoint before the appender runs (nil
	// error and nil bytes when there is none).
	checkpoint func(ctx context.Context) ([]byte, error)
	// checkpointAge says how long ago the checkpoint was written.
	checkpointAge func(ctx context.Context) (time.Duration, error)
	// trimsReads: the driver's reads return the whole stored tile or bundle
	// when a smaller partial one is asked for (MySQL); they are trimmed.
	trimsReads bool
	close      func() error
}

//go:embed mysqlschema/tessera.sql
var tesseraMySQLSchema string

// openBackend opens the storage cfg names. witnessClient is the HTTP
// client Tessera asks witnesses with.
func openBackend(ctx context.Context, cfg Config, witnessClient *http.Client) (*backend, error) {
	switch {
	case cfg.S3 != nil:
		if cfg.MySQL == "" {
			return nil, errors.New("an S3 log sequences in MySQL: give --mysql DSN with --s3-bucket")
		}
		return openS3Backend(ctx, cfg, witnessClient)
	case cfg.MySQL != "":
		return openMySQLBackend(ctx, cfg)
	}
	driver, err := posix.New(ctx, posix.Config{Path: cfg.Dir, HTTPClient: witnessClient})
	if err != nil {
		return nil, fmt.Errorf("couldn't open POSIX storage in %s: %w", cfg.Dir, err)
	}
	return &backend{kind: "posix", driver: driver,
		checkpoint: func(context.Context) ([]byte, error) {
			b, err := os.ReadFile(filepath.Join(cfg.Dir, layout.CheckpointPath))
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			return b, err
		},
		checkpointAge: func(context.Context) (time.Duration, error) {
			fi, err := os.Stat(filepath.Join(cfg.Dir, layout.CheckpointPath))
			if err != nil {
				return 0, err
			}
			return time.Since(fi.ModTime()), nil
		},
		close: func() error { return nil },
	}, nil
}

// openMySQL opens the database of dsn and checks that it answers.
func openMySQL(ctx context.Context, dsn string) (*sql.DB, error) {
	c, err := mysqldriver.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("--mysql: %w (the form is user:password@tcp(host:3306)/database)", err)
	}
	if c.DBName == "" {
		return nil, errors.New("--mysql: the DSN names no database (the form is user:password@tcp(host:3306)/database)")
	}
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	db.SetConnMaxLifetime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("couldn't reach the MySQL database %s at %s: %w", c.DBName, c.Addr, err)
	}
	return db, nil
}

// applySchema runs the statements of a schema file (separated by ";" at
// the end of a line; "--" comments).
func applySchema(ctx context.Context, db *sql.DB, schema string) error {
	var lines []string
	for _, l := range strings.Split(schema, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("couldn't create Tessera's tables: %w", err)
		}
	}
	return nil
}

// mysqlDefaultClientMu serializes the swap of http.DefaultClient in
// openMySQLBackend's appender.
var mysqlDefaultClientMu sync.Mutex

func openMySQLBackend(ctx context.Context, cfg Config) (*backend, error) {
	db, err := openMySQL(ctx, cfg.MySQL)
	if err != nil {
		return nil, err
	}
	if err := applySchema(ctx, db, tesseraMySQLSchema); err != nil {
		db.Close()
		return nil, err
	}
	st, err := mysql.New(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("couldn't open Tessera's MySQL storage: %w", err)
	}
	return &backend{kind: "mysql", driver: mysqlDriver{st}, db: db, trimsReads: true,
		checkpoint: func(ctx context.Context) ([]byte, error) {
			b, err := st.ReadCheckpoint(ctx)
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			return b, err
		},
		checkpointAge: func(ctx context.Context) (time.Duration, error) {
			var at int64
			if err := db.QueryRowContext(ctx, "SELECT published_at FROM Checkpoint WHERE id = 0").Scan(&at); err != nil {
				return 0, err
			}
			return time.Since(time.UnixMilli(at)), nil
		},
		close: db.Close,
	}, nil
}

// mysqlDriver is Tessera's MySQL storage, whose appender asks witnesses
// with http.DefaultClient (v1.0.4 has no option for it): the appender is
// made with the log's witness client there, and the default put back.
type mysqlDriver struct{ *mysql.Storage }

// witnessClient is set by New before it makes the appender.
func (m mysqlDriver) appenderWith(ctx context.Context, opts *tessera.AppendOptions, witnessClient *http.Client) (*tessera.Appender, func(context.Context) error, tessera.LogReader, error) {
	if witnessClient == nil {
		return tessera.NewAppender(ctx, m, opts)
	}
	mysqlDefaultClientMu.Lock()
	defer mysqlDefaultClientMu.Unlock()
	saved := http.DefaultClient
	http.DefaultClient = witnessClient
	defer func() { http.DefaultClient = saved }()
	return tessera.NewAppender(ctx, m, opts)
}

// trimTile cuts a tile the driver returned whole to the partial width p
// asked for (0: a full tile), or says it is too short.
func trimTile(tile []byte, p uint8) ([]byte, bool) {
	n := int(p)
	if n == 0 {
		n = layout.TileWidth
	}
	if len(tile) < n*32 {
		return nil, false
	}
	return tile[:n*32], true
}

// trimBundle cuts an entry bundle the driver returned whole to its first p
// entries (0: all 256).
func trimBundle(bundle []byte, p uint8) ([]byte, bool) {
	n := int(p)
	if n == 0 {
		n = layout.EntryBundleWidth
	}
	off := 0
	for range n {
		if off+2 > len(bundle) {
			return nil, false
		}
		l := int(bundle[off])<<8 | int(bundle[off+1])
		off += 2 + l
		if off > len(bundle) {
			return nil, false
		}
	}
	return bundle[:off], true
}

// openS3Backend opens Tessera's AWS driver: tiles and bundles in the
// bucket, sequencing in the MySQL database (whose tables the driver
// creates), which the idempotency index shares.
func openS3Backend(ctx context.Context, cfg Config, witnessClient *http.Client) (*backend, error) {
	db, err := openMySQL(ctx, cfg.MySQL)
	if err != nil {
		return nil, err
	}
	tc, err := cfg.S3.tesseraConfig(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("--s3-bucket %s: %w", cfg.S3.Bucket, err)
	}
	tc.DSN = cfg.MySQL
	tc.HTTPClient = witnessClient
	driver, err := tesseraaws.New(ctx, tc)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("couldn't open Tessera's AWS storage: %w", err)
	}
	client, err := cfg.S3.s3Client(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	key := cfg.S3.checkpointKey()
	head := func(ctx context.Context) (*s3.HeadObjectOutput, error) {
		return client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &cfg.S3.Bucket, Key: &key})
	}
	return &backend{kind: "s3", driver: driver, db: db,
		checkpoint: func(ctx context.Context) ([]byte, error) {
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &cfg.S3.Bucket, Key: &key})
			if err != nil {
				var nsk *s3types.NoSuchKey
				if errors.As(err, &nsk) {
					return nil, nil
				}
				return nil, err
			}
			defer out.Body.Close()
			return io.ReadAll(io.LimitReader(out.Body, 1<<20))
		},
		checkpointAge: func(ctx context.Context) (time.Duration, error) {
			out, err := head(ctx)
			if err != nil {
				return 0, err
			}
			if out.LastModified == nil {
				return 0, errors.New("no Last-Modified")
			}
			return time.Since(*out.LastModified), nil
		},
		close: db.Close,
	}, nil
}
