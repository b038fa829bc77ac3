package auditor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// Counts are what a full check found among the leaves.
type Counts struct {
	Leaves   uint64 `json:"leaves"`
	Event    uint64 `json:"event"`     // canonical event leaves
	Raw      uint64 `json:"raw"`       // leaves that do not claim to be event leaves
	Bad      uint64 `json:"bad"`       // claim to be event leaves, are not canonical
	RuleHits uint64 `json:"rule_hits"` // leaves that matched a rule (counted once per rule)
}

func (c *Counts) add(o Counts) {
	c.Leaves += o.Leaves
	c.Event += o.Event
	c.Raw += o.Raw
	c.Bad += o.Bad
	c.RuleHits += o.RuleHits
}

// FullResult is the outcome of a full check.
type FullResult struct {
	// Checkpoint is the witnessed checkpoint the leaves were checked
	// against.
	Checkpoint checkpoint.Checkpoint
	// Signed is that checkpoint as the log served it: the signed note
	// with its cosignatures.
	Signed []byte
	// Verified: every leaf was fetched, the recomputed root equals the
	// checkpoint's and every hash tile matched.
	Verified bool
	// Counts are over the whole tree, this run and earlier ones it resumed.
	Counts Counts
	// Resumed is the number of leaves an earlier run had already checked.
	Resumed uint64
	// Checked is the number of leaves checked in this run, in Elapsed.
	Checked uint64
	Elapsed time.Duration
}

// Rate is the leaves checked a second in this run.
func (f *FullResult) Rate() float64 {
	if f.Elapsed <= 0 {
		return 0
	}
	return float64(f.Checked) / f.Elapsed.Seconds()
}

// saveEvery is how often a full check records its progress.
const saveEvery = 5 * time.Second

// Caps on the findings one replay reports one by one; the rest are counted.
const (
	maxLeafFindings = 20
	maxRuleFindings = 1000
	maxTileFindings = 20
	maxLeafInAlert  = 4096
)

// Full runs Check, then downloads every entry bundle of the log, hashes
// every leaf, rebuilds the tree and checks it against the witnessed
// checkpoint Check accepted: the root, every hash tile, and each leaf's
// kind (event, raw, or claiming to be an event leaf without being
// canonical). Rules, if any, are matched against every event leaf.
//
// Bundles are fetched by Workers goroutines, which also hash, classify and
// check the level-0 tile of their bundle; one goroutine merges their
// results in order into a compact range (a handful of hashes, whatever the
// log's size) and checks the higher tiles as their nodes appear. At most
// 2×Workers bundles are in memory at once. Progress (the compact range and
// the counters) is saved in the state every few seconds, so a run that is
// interrupted resumes where it was, and a run after the log has grown
// checks only the new leaves.
func (a *Auditor) Full(ctx context.Context) (*Report, error) {
	r := &Report{Origin: a.origin}
	defer a.countCheck(r)
	target, err := a.check(ctx, r, false)
	if err != nil {
		return r, err
	}
	if target == nil {
		a.unavailable(r, "run a full check", errors.New("there is no witnessed checkpoint to check the log against"))
		return r, nil
	}
	st := &a.state.full
	res := &FullResult{Checkpoint: target.c, Signed: target.raw}
	r.Full = res
	if a.cfg.Rescan {
		st.Next, st.Range, st.Counts, st.Checked, st.Root = 0, nil, Counts{}, 0, nil
	}
	if st.Checked == target.c.Size && st.Next == st.Checked && bytes.Equal(st.Root, target.c.Hash) {
		res.Verified, res.Counts, res.Resumed = true, st.Counts, st.Next
		return r, nil
	}
	var rng *compact.Range
	if st.Next > 0 && st.Next <= target.c.Size {
		// Every checkpoint accepted extends the one before, and the saved
		// range was checked against one of them, so it is a prefix of the
		// target's tree (the final root comparison checks that too).
		rng, err = rangeFactory.NewRange(0, st.Next, st.Range)
	}
	if rng == nil || err != nil {
		rng = rangeFactory.NewEmptyRange(0)
		st.Next, st.Range, st.Counts, st.Checked, st.Root = 0, nil, Counts{}, 0, nil
	}
	res.Resumed = rng.End()
	counts := st.Counts
	save := func() {
		st.Next, st.Range, st.Counts = rng.End(), rng.Hashes(), counts
		if err := a.state.saveFull(); err != nil {
			a.unavailable(r, "save the full check's progress", err)
		}
	}
	start := time.Now()
	ok, err := a.replay(ctx, r, target, rng, &counts, save)
	res.Elapsed = time.Since(start)
	res.Checked = rng.End() - res.Resumed
	res.Counts = counts
	if m := a.cfg.Metrics; m != nil {
		m.fullEntries.Add(float64(res.Checked))
		m.fullNext.Set(float64(rng.End()))
	}
	if ok {
		res.Verified = true
		st.Checked, st.Root = target.c.Size, target.c.Hash
		// The rules have seen every leaf up to here.
		if fs := &a.state.follow; fs.RulesNext < target.c.Size {
			fs.RulesNext = target.c.Size
			if err := a.state.saveFollow(); err != nil {
				a.unavailable(r, "save the state", err)
			}
		}
	}
	save()
	if err == nil && !ok && len(r.Findings) == 0 {
		a.unavailable(r, "complete the full check", errors.New("stopped early"))
	}
	return r, err
}

// scanNew fetches the leaves [from, cur.size), checks them against cur's
// root (with the tiles' hashes of [0, from)), and matches them against the
// rules.
func (a *Auditor) scanNew(ctx context.Context, r *Report, cur *signedCP, from uint64) (bool, error) {
	var rng *compact.Range
	if from == 0 {
		rng = rangeFactory.NewEmptyRange(0)
	} else {
		nodes, err := client.FetchRangeNodes(ctx, from, a.log.tilesAt(cur.c.Size))
		if err == nil {
			rng, err = rangeFactory.NewRange(0, from, nodes)
		}
		if err != nil {
			if ctx.Err() != nil {
				return false, ctxErr(ctx)
			}
			a.unavailable(r, "read the log's tiles to check new entries", err)
			return false, nil
		}
	}
	var counts Counts
	return a.replay(ctx, r, cur, rng, &counts, nil)
}

// bundleResult is what a worker makes of one entry bundle.
type bundleResult struct {
	ri     layout.RangeInfo
	rng    *compact.Range // the bundle's leaves [first, first+n)
	upper  []node         // nodes at levels 8, 16, ... created inside the bundle
	counts Counts
	bad    []leafNote
	hits   []leafNote
	tile   string // a level-0 tile mismatch, described
	err    error  // fatal: the bundle could not be read
	short  string // fatal: the bundle lacks entries the tree has
}

type node struct {
	id   compact.NodeID
	hash []byte
}

type leafNote struct {
	index uint64
	what  string // reason or rule name
	leaf  []byte
}

// replay checks the leaves [rng.End(), target.size) and merges them into
// rng; true if the result's root is target's and nothing was wrong.
func (a *Auditor) replay(ctx context.Context, r *Report, target *signedCP, rng *compact.Range, counts *Counts, save func()) (bool, error) {
	size := target.c.Size
	from := rng.End()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type job struct {
		ri  layout.RangeInfo
		out chan bundleResult
	}
	workers := a.cfg.Workers
	jobs := make(chan job)
	futures := make(chan chan bundleResult, 2*workers)
	go func() {
		defer close(jobs)
		defer close(futures)
		for ri := range layout.Range(from, size-from, size) {
			out := make(chan bundleResult, 1)
			select {
			case futures <- out:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{ri, out}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for range workers {
		wg.Go(func() {
			w := newBundleWorker(a, size)
			for j := range jobs {
				j.out <- w.do(ctx, j.ri)
			}
		})
	}

	up := &upperTiles{f: a.log, size: size, cache: map[uint64]upperTile{}}
	ok := true
	var tileFindings, leafFindings, ruleFindings int
	checkUpper := func(n node) {
		msg, err := up.check(ctx, n)
		if err != nil {
			ok = false
			if ctx.Err() == nil {
				a.unavailable(r, "read a hash tile", err)
			}
			return
		}
		if msg != "" {
			ok = false
			if tileFindings++; tileFindings <= maxTileFindings {
				a.addf(r, KindBadTiles, "", nil, "%s", msg)
			}
		}
	}
	visit := func(id compact.NodeID, h []byte) {
		if id.Level >= layout.TileHeight && id.Level%layout.TileHeight == 0 {
			checkUpper(node{id, h})
		}
	}
	start, lastProgress, lastSave := time.Now(), time.Now(), time.Now()
	progress := func(final bool) {
		if a.cfg.OnProgress == nil {
			return
		}
		el := time.Since(start)
		p := Progress{Done: rng.End(), Total: size, Elapsed: el}
		if el > 0 {
			p.Rate = float64(rng.End()-from) / el.Seconds()
		}
		if p.Rate > 0 {
			p.ETA = time.Duration(float64(size-rng.End()) / p.Rate * float64(time.Second))
		}
		if final || time.Since(lastProgress) >= a.cfg.ProgressInterval {
			lastProgress = time.Now()
			a.cfg.OnProgress(p)
		}
	}
	for out := range futures {
		var res bundleResult
		select {
		case res = <-out:
		case <-ctx.Done():
			return false, ctxErr(ctx)
		}
		if res.err != nil {
			if ctx.Err() != nil {
				return false, ctxErr(ctx)
			}
			a.unavailable(r, fmt.Sprintf("fetch entry bundle %d", res.ri.Index), res.err)
			return false, nil
		}
		if res.short != "" {
			a.addf(r, KindRootMismatch, "", nil, "%s", res.short)
			return false, nil
		}
		if res.tile != "" {
			ok = false
			if tileFindings++; tileFindings <= maxTileFindings {
				a.addf(r, KindBadTiles, "", nil, "%s", res.tile)
			}
		}
		for _, b := range res.bad {
			if leafFindings++; leafFindings <= maxLeafFindings {
				a.addf(r, KindBadLeaf, "", map[string]any{"index": b.index, "leaf": string(b.leaf)},
					"leaf %d claims to be an event leaf but is not one the log would write: %s", b.index, b.what)
			}
		}
		for _, h := range res.hits {
			if ruleFindings++; ruleFindings <= maxRuleFindings {
				a.addf(r, KindRule, "", map[string]any{"index": h.index, "rule": h.what, "leaf": string(h.leaf)},
					"leaf %d matches rule %q", h.index, h.what)
			}
		}
		for _, n := range res.upper {
			checkUpper(n)
		}
		if err := rng.AppendRange(res.rng, visit); err != nil {
			return false, fmt.Errorf("auditor: merging bundle %d: %w", res.ri.Index, err) // a bug, not the log
		}
		counts.add(res.counts)
		if save != nil && time.Since(lastSave) >= saveEvery {
			lastSave = time.Now()
			save()
		}
		progress(false)
	}
	if ctx.Err() != nil {
		return false, ctxErr(ctx)
	}
	progress(true)
	if leafFindings > maxLeafFindings {
		a.addf(r, KindBadLeaf, "", nil, "%d more leaves claim to be event leaves and are not (%d in all)", leafFindings-maxLeafFindings, leafFindings)
	}
	if ruleFindings > maxRuleFindings {
		a.addf(r, KindRule, "", nil, "%d more rule matches not reported one by one (%d in all)", ruleFindings-maxRuleFindings, ruleFindings)
	}
	if tileFindings > maxTileFindings {
		a.addf(r, KindBadTiles, "", nil, "%d more hash tile mismatches (%d in all)", tileFindings-maxTileFindings, tileFindings)
	}
	if leafFindings > 0 {
		ok = false
	}
	root := rfc6962.DefaultHasher.EmptyRoot()
	if rng.End() > 0 {
		var err error
		if root, err = rng.GetRootHash(nil); err != nil {
			return false, fmt.Errorf("auditor: computing the root: %w", err)
		}
	}
	if rng.End() != size {
		a.addf(r, KindRootMismatch, "", nil, "the log's entry bundles hold %d leaves, its checkpoint says %d", rng.End(), size)
		return false, nil
	}
	if !bytes.Equal(root, target.c.Hash) {
		a.addf(r, KindRootMismatch, fmt.Sprintf("root:%d:%x", size, target.c.Hash), map[string]any{"checkpoint": string(target.raw), "computed_root": b64(root)},
			"the log's %d leaves hash to root %s, but its witnessed checkpoint of that size says %s: entries were changed, dropped or added",
			size, b64(root), b64(target.c.Hash))
		return false, nil
	}
	return ok, nil
}

// bundleWorker fetches, parses, hashes and checks bundles; one per worker
// goroutine, with buffers reused from one bundle to the next.
type bundleWorker struct {
	a       *Auditor
	size    uint64
	buf     bytes.Buffer
	tileBuf bytes.Buffer
	entries [][]byte
	h       hash.Hash
}

func newBundleWorker(a *Auditor, size uint64) *bundleWorker {
	return &bundleWorker{a: a, size: size, h: sha256.New(), entries: make([][]byte, 0, layout.EntryBundleWidth)}
}

var leafPrefix = []byte{rfc6962.RFC6962LeafHashPrefix}

func (w *bundleWorker) do(ctx context.Context, ri layout.RangeInfo) bundleResult {
	res := bundleResult{ri: ri}
	data, err := w.a.log.bundle(ctx, ri.Index, w.size, &w.buf)
	if err != nil {
		res.err = err
		return res
	}
	// Split the bundle: big-endian uint16 lengths, each followed by the
	// entry (as api.EntryBundle.UnmarshalText, without its allocations).
	w.entries = w.entries[:0]
	for i := 0; i < len(data); {
		if len(data)-i < 2 {
			res.short = fmt.Sprintf("entry bundle %d is malformed: %d dangling bytes at its end", ri.Index, len(data)-i)
			return res
		}
		n := int(binary.BigEndian.Uint16(data[i:]))
		if len(data)-i-2 < n {
			res.short = fmt.Sprintf("entry bundle %d is malformed: an entry of %d bytes runs past its end", ri.Index, n)
			return res
		}
		w.entries = append(w.entries, data[i+2:i+2+n])
		i += 2 + n
	}
	first, n := int(ri.First), int(ri.N)
	if len(w.entries) < first+n {
		res.short = fmt.Sprintf("entry bundle %d holds %d entries, but the log's tree of size %d has %d leaves in it: entries are missing",
			ri.Index, len(w.entries), w.size, first+n)
		return res
	}
	base := ri.Index*layout.EntryBundleWidth + uint64(first)
	hashes := make([]byte, n*checkpoint.HashSize) // kept by the range: not reused
	res.rng = rangeFactory.NewEmptyRange(base)
	rules := w.a.cfg.Rules
	visit := func(id compact.NodeID, hash []byte) {
		if id.Level >= layout.TileHeight && id.Level%layout.TileHeight == 0 {
			res.upper = append(res.upper, node{id, hash})
		}
	}
	for i, leaf := range w.entries[first : first+n] {
		h := hashes[i*checkpoint.HashSize : (i+1)*checkpoint.HashSize : (i+1)*checkpoint.HashSize]
		w.h.Reset()
		w.h.Write(leafPrefix)
		w.h.Write(leaf)
		w.h.Sum(h[:0])
		_ = res.rng.Append(h, visit)
		idx := base + uint64(i)
		if w.a.cfg.OnLeaf != nil {
			w.a.cfg.OnLeaf(idx, leaf)
		}
		class, why := classify(leaf)
		switch class {
		case leafEvent:
			res.counts.Event++
			if len(rules) > 0 {
				for _, name := range matchRules(rules, leaf) {
					res.counts.RuleHits++
					res.hits = append(res.hits, leafNote{idx, name, clip(leaf)})
				}
			}
		case leafRaw:
			res.counts.Raw++
		case leafBad:
			res.counts.Bad++
			res.bad = append(res.bad, leafNote{idx, why, clip(leaf)})
		}
	}
	res.counts.Leaves = uint64(n)
	// The level-0 tile holds these leaves' hashes: it must match.
	tile, err := w.a.log.tile(ctx, 0, ri.Index, w.size, &w.tileBuf)
	if err != nil {
		var te *tileError
		if errors.As(err, &te) {
			res.tile = err.Error()
			return res
		}
		res.err = err
		return res
	}
	off := first * checkpoint.HashSize
	if !bytes.Equal(tile[off:off+len(hashes)], hashes) {
		for i := 0; i < n; i++ {
			if !bytes.Equal(tile[off+i*checkpoint.HashSize:off+(i+1)*checkpoint.HashSize], hashes[i*checkpoint.HashSize:(i+1)*checkpoint.HashSize]) {
				res.tile = fmt.Sprintf("hash tile %s: the hash of leaf %d is not the one the entry bundle gives: the tile was tampered with, or the entry",
					layout.TilePath(0, ri.Index, layout.PartialTileSize(0, ri.Index, w.size)), base+uint64(i))
				break
			}
		}
	}
	return res
}

func clip(b []byte) []byte {
	if len(b) > maxLeafInAlert {
		b = b[:maxLeafInAlert]
	}
	return bytes.Clone(b)
}

// upperTiles checks nodes at levels 8, 16, ... against the log's tiles of
// levels 1, 2, ..., keeping the current tile of each level.
type upperTiles struct {
	f     *fetcher
	size  uint64
	cache map[uint64]upperTile // by tile level
	buf   bytes.Buffer
}

type upperTile struct {
	index uint64
	data  []byte
}

// check returns "" if the node's hash is the log's, else what is wrong;
// an error if the tile could not be read.
func (u *upperTiles) check(ctx context.Context, n node) (string, error) {
	tl, ti, nl, ni := layout.NodeCoordsToTileAddress(uint64(n.id.Level), n.id.Index)
	if nl != 0 {
		return "", nil
	}
	t, ok := u.cache[tl]
	if !ok || t.index != ti {
		data, err := u.f.tile(ctx, tl, ti, u.size, &u.buf)
		var te *tileError
		if errors.As(err, &te) {
			return err.Error(), nil
		}
		if err != nil {
			return "", err
		}
		t = upperTile{ti, bytes.Clone(data)}
		u.cache[tl] = t
	}
	off := int(ni) * checkpoint.HashSize
	if off+checkpoint.HashSize > len(t.data) || !bytes.Equal(t.data[off:off+checkpoint.HashSize], n.hash) {
		return fmt.Sprintf("hash tile %s: node %d does not match the hash of the leaves under it: the tile was tampered with",
			layout.TilePath(tl, ti, layout.PartialTileSize(tl, ti, u.size)), ni), nil
	}
	return "", nil
}
