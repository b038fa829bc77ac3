package search

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// A Source is the log the index is built from.
type Source interface {
	// Size is the integrated tree size.
	Size(ctx context.Context) (uint64, error)
	// Bundle reads entry bundle index, of p entries (0: full); it may
	// hold more entries than asked for, which are ignored.
	Bundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

// A Vanishing source is one whose events can be erased while the indexer
// reads them (a commitment log: an erasure deletes an event's payload,
// then its search row). After each commit the indexer asks it which of the
// entries it just indexed have vanished since they were read, and deletes
// their rows: an erasure that deleted the search row before the indexer
// wrote it is not undone.
type Vanishing interface {
	Source
	// Vanished returns those of idxs, entries read through Bundle, whose
	// events are gone now.
	Vanished(ctx context.Context, idxs []uint64) ([]uint64, error)
}

// An Indexer keeps a Store complete up to the log's size.
type Indexer struct {
	store   *Store
	src     Source
	mapping *Mapping
	log     *slog.Logger

	// Poll is how often an indexer that caught up looks for new
	// entries (default 500 ms).
	Poll time.Duration
	// Duty is the share of its time the indexer may work while the log
	// takes writes faster than BusyRate entries a second (default 0.25);
	// idle, it works flat out.
	Duty     float64
	BusyRate float64

	lag     prometheus.Gauge
	indexed prometheus.Counter
}

// chunkBundles is how many entry bundles one commit covers.
const chunkBundles = 16

// NewIndexer makes an indexer of src into store, registering its metrics
// (tidemark_search_lag_entries, tidemark_search_indexed_entries_total)
// with reg when it is not nil.
func NewIndexer(store *Store, src Source, m *Mapping, log *slog.Logger, reg prometheus.Registerer) (*Indexer, error) {
	ix := &Indexer{
		store: store, src: src, mapping: m, log: log,
		Poll: 500 * time.Millisecond, Duty: 0.25, BusyRate: 1000,
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tidemark_search_lag_entries",
			Help: "Entries integrated into the tree but not yet in the search index.",
		}),
		indexed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_search_indexed_entries_total",
			Help: "Entries this process added to the search index.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{ix.lag, ix.indexed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return ix, nil
}

// analyzeEvery is how many newly indexed entries make the indexer refresh
// the planner's statistics (Store.Analyze), at most once a minute.
const analyzeEvery = 50_000

// Run indexes until ctx ends. Errors are logged and retried.
func (ix *Indexer) Run(ctx context.Context) {
	var lastSize uint64
	lastAt := time.Now()
	var sinceAnalyze, lastDone uint64
	analyzedAt := time.Time{}
	var progress progressLog
	failing := false
	for ctx.Err() == nil {
		start := time.Now()
		size, done, err := ix.Step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				ix.log.Warn("the search index is not keeping up: retrying every second (search answers up to complete_to)", "err", err)
			}
			failing = true
			sleep(ctx, time.Second)
			continue
		}
		if failing {
			ix.log.Info("the search index is being written again")
			failing = false
		}
		progress.report(ix.log, done, size)
		if done > lastDone {
			sinceAnalyze += done - lastDone
		}
		lastDone = done
		if sinceAnalyze >= analyzeEvery && time.Since(analyzedAt) >= time.Minute || analyzedAt.IsZero() && done >= size {
			if err := ix.store.Analyze(ctx); err != nil && ctx.Err() == nil {
				ix.log.Warn("couldn't refresh the search index's statistics", "err", err)
			}
			sinceAnalyze, analyzedAt = 0, time.Now()
		}
		if done >= size {
			sleep(ctx, ix.Poll)
			continue
		}
		// Behind: keep going, but while the log is busy take only a share
		// of a core, so that ingest keeps its pace; the lag is made up
		// when the burst ends.
		now := time.Now()
		rate := float64(size-lastSize) / now.Sub(lastAt).Seconds()
		lastSize, lastAt = size, now
		if ix.Duty > 0 && ix.Duty < 1 && rate > ix.BusyRate {
			work := now.Sub(start)
			ix.rest(ctx, time.Duration(float64(work)*(1-ix.Duty)/ix.Duty), done)
		}
	}
}

// rest sleeps for d, keeping the lag metric current meanwhile: the log
// grows while a busy indexer rests.
func (ix *Indexer) rest(ctx context.Context, d time.Duration, done uint64) {
	end := time.Now().Add(d)
	for ctx.Err() == nil {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		sleep(ctx, min(left, time.Second))
		if size, err := ix.src.Size(ctx); err == nil && size > done {
			ix.lag.Set(float64(size - done))
		}
	}
}

// Step indexes one chunk of entries above the index's progress. It
// returns the log's size and the progress after the step.
func (ix *Indexer) Step(ctx context.Context) (size, done uint64, err error) {
	if size, err = ix.src.Size(ctx); err != nil {
		return 0, 0, fmt.Errorf("couldn't read the tree size: %w", err)
	}
	from, err := ix.store.CompleteTo(ctx)
	if err != nil {
		return size, 0, fmt.Errorf("couldn't read the search index's progress: %w", err)
	}
	if from >= size {
		ix.lag.Set(0)
		return size, from, nil
	}
	ix.lag.Set(float64(size - from))
	to := min(size, (from/layout.EntryBundleWidth+chunkBundles)*layout.EntryBundleWidth)
	rows, err := ix.rows(ctx, from, to)
	if err != nil {
		return size, from, err
	}
	ok, err := ix.store.Commit(ctx, from, to, rows)
	if err != nil {
		return size, from, fmt.Errorf("couldn't write the search index: %w", err)
	}
	if !ok {
		// Another frontend moved it, or it was reset: read it again.
		return size, from, nil
	}
	if v, isV := ix.src.(Vanishing); isV && len(rows) > 0 {
		idxs := make([]uint64, len(rows))
		for i, r := range rows {
			idxs[i] = r.Index
		}
		gone, err := v.Vanished(ctx, idxs)
		if err == nil && len(gone) > 0 {
			isGone := make(map[uint64]bool, len(gone))
			for _, i := range gone {
				isGone[i] = true
			}
			var erase []Row
			for _, r := range rows {
				if isGone[r.Index] {
					erase = append(erase, r)
				}
			}
			if err = ix.store.EraseRows(ctx, erase); err == nil {
				err = ix.store.Flush(ctx)
			}
		}
		if err != nil {
			return size, to, fmt.Errorf("couldn't check the indexed entries against erasures: %w", err)
		}
	}
	ix.indexed.Add(float64(to - from))
	ix.lag.Set(float64(size - to))
	return size, to, nil
}

// rows reads the entries in [from, to) and makes the rows of the event
// leaves among them.
func (ix *Indexer) rows(ctx context.Context, from, to uint64) ([]Row, error) {
	var rows []Row
	for i := from / layout.EntryBundleWidth; i*layout.EntryBundleWidth < to; i++ {
		raw, err := ix.src.Bundle(ctx, i, layout.PartialTileSize(0, i, to))
		if err != nil {
			return nil, fmt.Errorf("couldn't read entry bundle %d: %w", i, err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return nil, fmt.Errorf("couldn't parse entry bundle %d: %w", i, err)
		}
		for j, e := range b.Entries {
			idx := i*layout.EntryBundleWidth + uint64(j)
			if idx < from || idx >= to {
				continue
			}
			if r, ok := RowOf(idx, e, ix.mapping); ok {
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

// RowOf makes the row of an entry, if it is an event leaf (raw entries
// from /add have none).
func RowOf(idx uint64, entry []byte, m *Mapping) (Row, bool) {
	// ParseLeaf accepts exactly the leaves the log writes: no need to ask
	// ClaimsEventLeaf first (a decode of its own).
	l, err := checkpoint.ParseLeaf(entry)
	if err != nil {
		return Row{}, false
	}
	return Row{Index: idx, Received: l.Received, Source: l.Source, Fields: Extract(l.Event, m)}, true
}

// Rebuild throws the index away and builds it again from the whole log in
// this process, calling onProgress after each chunk.
func Rebuild(ctx context.Context, store *Store, src Source, m *Mapping, onProgress func(done, size uint64)) error {
	if err := store.Reset(ctx); err != nil {
		return fmt.Errorf("couldn't reset the search index: %w", err)
	}
	ix, err := NewIndexer(store, src, m, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return err
	}
	for {
		size, done, err := ix.Step(ctx)
		if err != nil {
			return err
		}
		if onProgress != nil {
			onProgress(done, size)
		}
		if done >= size {
			return nil
		}
	}
}

// progressLog logs a large build's progress every 10 s.
type progressLog struct {
	at       time.Time
	done     uint64
	building bool
}

func (p *progressLog) report(log *slog.Logger, done, size uint64) {
	const big = 100_000
	now := time.Now()
	switch {
	case size-done >= big && !p.building:
		p.building, p.at, p.done = true, now, done
		log.Info("building the search index from the log", "indexed", done, "tree_size", size)
	case p.building && done >= size:
		p.building = false
		log.Info("the search index caught up with the log", "tree_size", size)
	case p.building && now.Sub(p.at) >= 10*time.Second:
		rate := float64(done-p.done) / now.Sub(p.at).Seconds()
		log.Info("building the search index", "indexed", done, "tree_size", size, "entries_per_second", int(rate))
		p.at, p.done = now, done
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var errNoStore = errors.New("no search index")
