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
	fs := newFlags("migrate", "--from DIR --mysql DSN [--key FILE] [--workers N]",
		"Copies a log kept in a data directory (POSIX, `tidemark log --data DIR`) into a MySQL database, so that\n"+
			"`tidemark log --mysql DSN --key FILE` carries on with the same history: same origin, same tree, old\n"+
			"receipts and retries of old events still answered. The source checkpoint must verify with the log's key;\n"+
			"the database recomputes the tree from the copied entries, and the migration succeeds only if its root is\n"+
			"the source checkpoint's. Stop the log first (entries it takes later are not copied). A database holding\n"+
			"another log is refused; an interrupted migration resumes when run again, and no log starts on the\n"+
			"database until one succeeds. Progress goes to stderr every few seconds.")
	from := fs.String("from", "", "data directory of the log to copy (required)")
	mysqlDSN := fs.String("mysql", "", "the MySQL-compatible database to copy into (DSN user:password@tcp(host:3306)/database; required; the tables are created)")
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
		return usageError{"--mysql DSN is required (the database to copy into)"}
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
	cfg := tlog.MigrateConfig{From: *from, KeyFiles: keys, MySQL: *mysqlDSN, Workers: *workers, Logger: logger}
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
	fmt.Printf("start the log on it with the same key: tidemark log --mysql DSN --data DIR --key KEYFILE\n")
	return nil
}
