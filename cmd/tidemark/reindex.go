package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/auditor"
	"github.com/tidemark/tidemark/client"
	"github.com/tidemark/tidemark/internal/search"
	tlog "github.com/tidemark/tidemark/log"
)

func runReindex(args []string) error {
	flags := newFlags("reindex", "(--data DIR | --mysql DSN) [--log URL] [--progress auto|lines|off]",
		"Throws a log's search index away, so that the log builds it again from its first entry: after a\n"+
			"--search-mapping change, or when the index is suspect. The index is derived from the log and never\n"+
			"trusted (every hit is read back from the log and checked), so nothing is lost but search's completeness\n"+
			"while it is rebuilt. It is safe while the log runs: the running log's indexer starts again from entry 0\n"+
			"(on MySQL, every frontend's); a stopped log rebuilds it when it starts. Searches meanwhile answer\n"+
			"with complete_to below the log's size.\n\n"+
			"--data DIR is the log's data directory (the index is DIR/.tidemark/search.db); --mysql DSN is the\n"+
			"log's database (the form of `tidemark log --mysql`), where the index is in tables of its own.\n"+
			"With --log URL, the log's public URL, it then waits until the index covers the log's size when\n"+
			"reindex started, showing progress (entries, rate, ETA) on stderr.\n\n"+
			"Examples:\n"+
			"  tidemark reindex --data /var/lib/tidemark --log http://127.0.0.1:8080\n"+
			"  tidemark reindex --mysql 'tidemark:secret@tcp(db:3306)/tidemark' --log https://audit.example.com\n\n"+
			"Exit status 0: reset (and with --log, rebuilt); 1: failed; 2: a mistake in the command line.")
	data := flags.String("data", "", "the data directory of the log (POSIX), whose search index to reset")
	mysqlDSN := flags.String("mysql", "", "the database of the log on MySQL (DSN user:password@tcp(host:3306)/database), whose search tables to reset")
	logURL := flags.String("log", "", "the log's URL: wait for the rebuild, showing progress")
	progress := flags.String("progress", "auto", "with --log: auto (a bar on a terminal, else a line every 5 s), lines, or off")
	stallAfter := flags.Duration("stall-warning", 30*time.Second, "with --log: say so when the index has not moved for this long")
	timeout := flags.Duration("timeout", 0, "with --log: give up waiting after this long (0: wait until done or interrupted)")
	tlsCA := addTLSCAFlag(flags, "logs")
	pos, err := parse(flags, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
	case (*data == "") == (*mysqlDSN == ""):
		return usageError{"give the log's --data DIR (a log on files) or its --mysql DSN (a log on MySQL), one of them"}
	}
	var onProgress func(auditor.Progress)
	switch *progress {
	case "auto":
		onProgress = auditor.NamedProgressPrinter(os.Stderr, auditor.IsTerminal(os.Stderr), 5*time.Second, "search index")
	case "lines":
		onProgress = auditor.NamedProgressPrinter(os.Stderr, false, 5*time.Second, "search index")
	case "off":
		onProgress = func(auditor.Progress) {}
	default:
		return usageError{"--progress: use auto, lines or off"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The log first: a wrong URL changes nothing.
	var target uint64
	var c *client.Client
	if *logURL != "" {
		rootCAs, err := loadTLSCA(*tlsCA)
		if err != nil {
			return err
		}
		if c, err = client.New(*logURL, &client.Options{RootCAs: rootCAs, MaxAttempts: 3}); err != nil {
			return usageError{err.Error()}
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		target, err = c.LatestSize(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("couldn't read the log's size from %s, so nothing was reset: %w\nis the log running there? (reindex a stopped log without --log: it rebuilds the index when it starts)", *logURL, tlsHint(err))
		}
	}

	var st *search.Store
	what := ""
	if *data != "" {
		path := tlog.SearchIndexFile(*data)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("there is no search index at %s: is %s the --data of a log on files? (a log on MySQL keeps it in its database: give --mysql DSN; a log run with --search=false has none, and builds one when started with search on)", path, *data)
		} else if err != nil {
			return err
		}
		if st, err = search.OpenSQLite(ctx, path); err != nil {
			return err
		}
		defer st.Close()
		what = path
	} else {
		var closeDB func() error
		if st, closeDB, err = tlog.OpenMySQLSearchIndex(ctx, *mysqlDSN); err != nil {
			return err
		}
		defer closeDB()
		what = "the search tables of the MySQL database"
	}
	before, err := st.CompleteTo(ctx)
	if err != nil {
		return fmt.Errorf("couldn't read the search index %s: %w", what, err)
	}
	if err := st.Reset(ctx); err != nil {
		return fmt.Errorf("couldn't reset the search index %s: %w", what, err)
	}
	fmt.Printf("reset %s (it covered %d entries): the running log builds it again from entry 0 now; a stopped log does when it starts\n", what, before)
	if c == nil {
		fmt.Println("follow the rebuild with `tidemark reindex ... --log URL` next time, or with tidemark_search_lag_entries in the log's /metrics; searches say complete_to meanwhile")
		return nil
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	done, err := waitRebuilt(ctx, st, target, *stallAfter, onProgress)
	if err != nil {
		return fmt.Errorf("%w\nthe index is reset and covers %d of %d entries: the log goes on rebuilding it without reindex", err, done, target)
	}
	fmt.Printf("rebuilt: the search index covers %d entries (the log had %d when reindex started)\n", done, target)
	return nil
}

// waitRebuilt polls the index until it covers target entries, reporting
// progress, and returns how far it got.
func waitRebuilt(ctx context.Context, st *search.Store, target uint64, stallAfter time.Duration, onProgress func(auditor.Progress)) (uint64, error) {
	start := time.Now()
	var last uint64
	movedAt, warned := start, false
	for {
		done, err := st.CompleteTo(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return last, waitEnded(ctx)
			}
			return last, fmt.Errorf("couldn't read the search index's progress: %w", err)
		}
		now := time.Now()
		if done != last {
			movedAt, warned = now, false
		}
		if done < last {
			// Another reset, or a frontend that rebuilt from an older
			// state: count from here.
			start = now
		}
		last = done
		p := auditor.Progress{Done: min(done, target), Total: target, Elapsed: now.Sub(start)}
		if s := p.Elapsed.Seconds(); s > 0 {
			p.Rate = float64(done) / s
		}
		if p.Rate > 0 && done < target {
			p.ETA = time.Duration(float64(target-done) / p.Rate * float64(time.Second))
		}
		onProgress(p)
		if done >= target {
			return done, nil
		}
		if !warned && stallAfter > 0 && now.Sub(movedAt) >= stallAfter {
			warned = true
			fmt.Fprintf(os.Stderr, "the search index has stayed at %d entries for %s: is the log running, with search on (not --search=false), on this --data or --mysql? Still waiting (Ctrl-C stops waiting; the rebuild goes on in the log)\n", done, stallAfter)
		}
		select {
		case <-ctx.Done():
			return last, waitEnded(ctx)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func waitEnded(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errors.New("stopped waiting: --timeout")
	}
	return errors.New("stopped waiting: interrupted")
}
