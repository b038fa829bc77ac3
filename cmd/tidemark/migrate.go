package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	tlog "github.com/tidemark/tidemark/log"
	"k8s.io/klog/v2"
)

func runMigrate(args []string) error {
	fs := newFlags("migrate", "--from DIR --mysql DSN [--s3-bucket B [--s3-endpoint URL] [--s3-prefix P] [--s3-region R] [--s3-retention D]] [--key FILE] [--workers N]",
		"Copies a log kept in a data directory (POSIX, `tidemark log --data DIR`) into a MySQL database, or into an\n"+
			"S3 bucket sequenced by a MySQL database (--s3-bucket), so that `tidemark log --mysql DSN [--s3-bucket B ...]\n"+
			"--key FILE` carries on with the same history: same origin, same tree, old receipts and retries of old events\n"+
			"still answered. The source checkpoint must verify with the log's key; the target recomputes the tree from\n"+
			"the copied entries, and the migration succeeds only if its root is the source checkpoint's (into S3, every\n"+
			"entry bundle is also read back from the bucket and compared). Stop the log first (entries it takes later are\n"+
			"not copied). A database or bucket holding another log is refused; an interrupted migration resumes when run\n"+
			"again, and no log starts on the target until one succeeds. The --s3-* flags are `tidemark log`'s: give the\n"+
			"same ones to the log afterwards (with --s3-retention, the copied tiles and bundles are locked as the log's\n"+
			"are). Progress goes to stderr every few seconds.")
	from := fs.String("from", "", "data directory of the log to copy (required)")
	mysqlDSN := fs.String("mysql", "", "the MySQL-compatible database to copy into (DSN user:password@tcp(host:3306)/database; required; the tables are created)")
	s3Bucket := fs.String("s3-bucket", "", "copy the tiles and entry bundles into this S3 bucket (with --mysql, which sequences), as `tidemark log --s3-bucket` keeps them; credentials from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or the shared config)")
	s3Endpoint := fs.String("s3-endpoint", "", "URL of an S3-compatible server other than AWS (path-style addressing)")
	s3Prefix := fs.String("s3-prefix", "", "prefix of the log's objects in the bucket, to keep several logs in one")
	s3Region := fs.String("s3-region", "", "the bucket's region (default from the AWS environment, else us-east-1)")
	s3Retention := fs.Duration("s3-retention", 0, "write tiles and entry bundles under S3 Object Lock (compliance mode) for this long, e.g. 8760h, as the log does: nobody, the operator included, can delete or overwrite them before then; the bucket must have Object Lock enabled")
	var keys stringList
	fs.Var(&keys, "key", "the log's key file, signer or verifier key, to verify the source checkpoint (repeatable during a rotation); default FROM/log.pub, else FROM/log.key")
	workers := fs.Uint("workers", 4, "entry bundles copied at once")
	every := fs.Duration("progress", 5*time.Second, "how often progress is printed on stderr (0: never)")
	verbose := fs.Bool("verbose", false, "print Tessera's own migration log too")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return usageError{"--from DIR is required (the data directory of the log to copy)"}
	}
	if *mysqlDSN == "" {
		if *s3Bucket != "" {
			return usageError{"--s3-bucket needs --mysql DSN: entries are sequenced in MySQL, tiles go to the bucket"}
		}
		return usageError{"--mysql DSN is required (the database to copy into)"}
	}
	var s3 *tlog.S3Config
	if *s3Bucket != "" {
		s3 = &tlog.S3Config{Bucket: *s3Bucket, Endpoint: *s3Endpoint, Prefix: *s3Prefix, Region: *s3Region, Retention: *s3Retention}
	} else if *s3Endpoint != "" || *s3Prefix != "" || *s3Retention != 0 {
		return usageError{"--s3-endpoint, --s3-prefix and --s3-retention need --s3-bucket"}
	}
	if *workers == 0 {
		return usageError{"--workers must be at least 1"}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	klog.SetSlogLogger(logger.With("component", "tessera"))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := tlog.MigrateConfig{From: *from, KeyFiles: keys, MySQL: *mysqlDSN, S3: s3, Workers: *workers, Logger: logger}
	if *every > 0 {
		cfg.ProgressEvery = *every
		cfg.Progress = func(p tlog.MigrateProgress) {
			fmt.Fprintf(os.Stderr, "tidemark migrate: copied %d/%d entries, integrated %d (%.1f%%), %.0f entries/s, %s\n",
				p.Copied, p.Total, p.Integrated, 100*float64(p.Integrated)/float64(p.Total), p.Rate(), p.Elapsed.Round(time.Second))
		}
	}
	res, err := tlog.Migrate(ctx, cfg)
	if err != nil {
		return err
	}
	root := base64.StdEncoding.EncodeToString(res.Root)
	switch {
	case res.AlreadyDone:
		fmt.Printf("the database already held the whole log: origin %s, %d entries, root %s (verified)\n", res.Origin, res.Size, root)
	default:
		fmt.Printf("migrated origin %s: %d entries (%d copied now), root %s, verified against the signed checkpoint, in %s (%.0f entries/s)\n",
			res.Origin, res.Size, res.Size-res.Resumed, root, res.Took.Round(time.Millisecond), float64(res.Size-res.Resumed)/res.Took.Seconds())
	}
	if s3 != nil {
		fmt.Printf("start the log on it with the same key and S3 flags: tidemark log --mysql DSN --s3-bucket %s ... --data DIR --key KEYFILE\n", s3.Bucket)
	} else {
		fmt.Printf("start the log on it with the same key: tidemark log --mysql DSN --data DIR --key KEYFILE\n")
	}
	return nil
}
