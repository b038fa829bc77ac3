package auditor

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"maps"
	"os"
	"path/filepath"
	"slices"
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
	Bad      uint64 `json:"bad"`       // claim to be leaves the log writes, are not canonical
	RuleHits uint64 `json:"rule_hits"` // events that matched a rule (counted once per rule)

	Commitment uint64 `json:"commitment,omitempty"` // canonical commitment leaves
	Erasure    uint64 `json:"erasure,omitempty"`    // canonical erasure leaves (bad ones are in Bad)
	Opened     uint64 `json:"opened,omitempty"`     // commitment leaves whose content the log served and that opens the commitment
	Erased     uint64 `json:"erased,omitempty"`     // commitment leaves without content that an erasure leaf covers
	Unchecked  uint64 `json:"unchecked,omitempty"`  // commitment leaves whose content was not fetched (Config.SkipPayloads)
}

func (c *Counts) add(o Counts) {
	c.Leaves += o.Leaves
	c.Event += o.Event
	c.Raw += o.Raw
	c.Bad += o.Bad
	c.RuleHits += o.RuleHits
	c.Commitment += o.Commitment
	c.Erasure += o.Erasure
	c.Opened += o.Opened
	c.Erased += o.Erased
	c.Unchecked += o.Unchecked
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
	// Shipped is the number of verified events (event leaves and opened
	// commitment leaves) given to Config.Sink; 0 if it failed (they are
	// offered again).
	Shipped uint64
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
// kind (event, commitment, erasure, raw, or claiming to be a leaf the log
// writes without being canonical). The events of commitment leaves are
// fetched from the log and held to their commitments, and erasure leaves
// must account for every one missing (see payloads.go), unless
// SkipPayloads. Rules, if any, are matched against every event, opened
// ones included. With a Sink, the verified leaves go to it once the root
// matched (see verified.go).
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
	if a.cfg.Rescan {
		// Progress of its own, from leaf 0: what the state directory saved
		// stays as it was.
		st = &fullState{Origin: a.origin}
	}
	res := &FullResult{Checkpoint: target.c, Signed: target.raw}
	r.Full = res
	if a.cfg.Sink == nil && st.Spool != nil {
		// Leaves checked without a Sink are not spooled: a spool
		// continued later would have a hole.
		st.Spool = nil
		if a.state.dir != "" {
			os.Remove(filepath.Join(a.state.dir, spoolFile))
		}
	}
	if st.Checked == target.c.Size && st.Next == st.Checked && bytes.Equal(st.Root, target.c.Hash) && len(st.Missing) == 0 {
		res.Verified, res.Counts, res.Resumed = true, st.Counts, st.Next
		if a.cfg.Sink != nil && st.Spool != nil && st.Spool.Size > 0 {
			sp, err := openSpool(a.state.dir, st.Spool, st.Next)
			if err != nil {
				a.unavailable(r, "export", err)
				return r, nil
			}
			a.ship(ctx, r, target, sp)
		}
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
		st.Missing, st.Served, st.Spool = nil, nil, nil
	}
	res.Resumed = rng.End()
	counts, before := st.Counts, st.Counts
	pc := &contents{missing: indexSet{slices.Clone(st.Missing)}}
	for _, s := range st.Served {
		pc.served = append(pc.served, servedSet{below: s.Below, set: indexSet{slices.Clone(s.Runs)}})
	}
	var sp *spool
	if a.cfg.Sink != nil {
		if sp, err = openSpool(a.state.dir, st.Spool, rng.End()); err != nil {
			a.unavailable(r, "export", err)
			return r, nil
		}
	}
	spoolBroken := false
	save := func() {
		if spoolBroken {
			return
		}
		if sp != nil {
			// The progress saved must not run ahead of the spool, or a
			// resumed export would skip events: with the spool broken,
			// the last progress saved stands.
			rec, err := sp.sync()
			if err != nil {
				spoolBroken = true
				a.unavailable(r, "write the export spool", err)
				return
			}
			st.Spool = rec
		}
		st.Next, st.Range, st.Counts = rng.End(), rng.Hashes(), counts
		st.Missing, st.Served = slices.Clone(pc.missing.runs), pc.servedRuns(rng.End())
		if a.cfg.Rescan {
			return // progress of its own
		}
		if err := a.state.saveFull(); err != nil {
			a.unavailable(r, "save the full check's progress", err)
		}
	}
	start := time.Now()
	rootOK, ok, err := a.replay(ctx, r, target, rng, &counts, pc, sp, save)
	res.Elapsed = time.Since(start)
	res.Checked = rng.End() - res.Resumed
	res.Counts = counts
	if m := a.cfg.Metrics; m != nil {
		m.fullEntries.Add(float64(res.Checked))
		m.fullNext.Set(float64(rng.End()))
		m.countContents(before, res.Counts)
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
	if sp != nil {
		if rootOK && !spoolBroken {
			a.ship(ctx, r, target, sp)
		} else {
			sp.close(false)
		}
	}
	if err == nil && !ok && len(r.Findings) == 0 {
		a.unavailable(r, "complete the full check", errors.New("stopped early"))
	}
	return r, err
}

// ship gives the spooled leaves to the Sink, then empties the spool; on
// failure the spool stays for the next check (with a state directory).
func (a *Auditor) ship(ctx context.Context, r *Report, target *signedCP, sp *spool) {
	lr, err := sp.reader()
	if err == nil {
		lr.count = &r.Full.Shipped
		err = a.cfg.Sink.Ship(ctx, VerifiedCheckpoint{Checkpoint: target.c, Note: target.raw}, lr)
	}
	if err != nil {
		// They are offered again: none counts as shipped.
		r.Full.Shipped = 0
		sp.close(false)
		a.unavailable(r, "export the verified events", err)
		return
	}
	sp.close(true)
	a.state.full.Spool = nil
	if err := a.state.saveFull(); err != nil {
		a.unavailable(r, "save the full check's progress", err)
	}
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
	_, ok, err := a.replay(ctx, r, cur, rng, &counts, &contents{}, nil, nil)
	return ok, err
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

	// Commitment leaves: whose content opened, was missing, or did not
	// open (badOpen); erasure leaves that are good; what to spool.
	opened, missing []uint64
	badOpen         []leafNote
	erasures        []indexedErasure
	spool           []spoolEntry
}

type indexedErasure struct {
	index   uint64
	erasure checkpoint.Erasure
	served  []checkpoint.IndexRange // what of it the log serves still (runs)
}

type spoolEntry struct {
	index      uint64
	salt, leaf []byte
}

// contents tracks, across the bundles of a check, the commitment leaves
// whose content is missing and not (yet) covered by an erasure, and those
// whose content was served (see payloads.go), by the size of the tree the
// check was against: a check resumed against a larger tree must not hold
// an erasure made since against content served before it.
type contents struct {
	missing indexSet
	served  []servedSet
}

type servedSet struct {
	below uint64 // the size of the tree checked when the content was served
	set   indexSet
}

// serve records that the content of leaf i was served in a check against
// a tree of size below.
func (pc *contents) serve(i, below uint64) {
	if n := len(pc.served); n == 0 || pc.served[n-1].below != below {
		pc.served = append(pc.served, servedSet{below: below})
	}
	pc.served[len(pc.served)-1].set.add(i)
}

// erase takes r, which the erasure leaf at index j erases, out of the
// served contents, and returns those served by a check whose tree held
// that leaf: the log served them after it had erased them.
func (pc *contents) erase(j uint64, r checkpoint.IndexRange) []checkpoint.IndexRange {
	var took []checkpoint.IndexRange
	for k := range pc.served {
		if s := &pc.served[k]; s.below > j {
			took = append(took, s.set.remove(r)...)
		}
	}
	return took
}

// eraseAll is erase for each of an erasure leaf's ranges.
func (pc *contents) eraseAll(j uint64, rs []checkpoint.IndexRange) []checkpoint.IndexRange {
	var took []checkpoint.IndexRange
	for _, r := range rs {
		took = append(took, pc.erase(j, r)...)
	}
	return took
}

// unionRuns merges two lists of runs into sorted runs, disjoint and not
// touching.
func unionRuns(a, b []checkpoint.IndexRange) []checkpoint.IndexRange {
	all := append(slices.Clone(a), b...)
	slices.SortFunc(all, func(x, y checkpoint.IndexRange) int { return cmp.Compare(x.From, y.From) })
	var out []checkpoint.IndexRange
	for _, r := range all {
		if n := len(out); n > 0 && r.From <= out[n-1].To {
			out[n-1].To = max(out[n-1].To, r.To)
			continue
		}
		out = append(out, r)
	}
	return out
}

// servedRuns is what to save of the served contents when the leaves below
// next have been merged: an erasure leaf to come can convict only those
// served in a tree larger than next.
func (pc *contents) servedRuns(next uint64) []servedRuns {
	var out []servedRuns
	for _, s := range pc.served {
		if s.below > next && len(s.set.runs) > 0 {
			out = append(out, servedRuns{Below: s.below, Runs: slices.Clone(s.set.runs)})
		}
	}
	return out
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
// rng, and the contents of their commitment leaves into pc; rootOK if the
// result's root is target's, ok if also nothing was wrong. Verified leaves
// go to sp, if set.
func (a *Auditor) replay(ctx context.Context, r *Report, target *signedCP, rng *compact.Range, counts *Counts, pc *contents, sp *spool, save func()) (rootOK, ok bool, err error) {
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
			w := newBundleWorker(a, size, sp != nil)
			for j := range jobs {
				j.out <- w.do(ctx, j.ri)
			}
		})
	}

	up := &upperTiles{f: a.log, size: size, cache: map[uint64]upperTile{}}
	ok = true
	var tileFindings, leafFindings, ruleFindings, contentFindings int
	// Keyed, so that following a log reports each once.
	contentFinding := func(k Kind, key string, details map[string]any, format string, args ...any) {
		ok = false
		if contentFindings++; contentFindings <= maxLeafFindings {
			a.addf(r, k, string(k)+":"+key, details, format, args...)
		}
	}
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
		p := Progress{Done: rng.End(), Total: size, Elapsed: el, Opened: counts.Opened}
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
			return false, false, ctxErr(ctx)
		}
		if res.err != nil {
			if ctx.Err() != nil {
				return false, false, ctxErr(ctx)
			}
			if errors.Is(res.err, errPayloadsRefused) {
				a.unavailable(r, "fetch the contents of commitment leaves", fmt.Errorf("%w: this log keeps its events in a payload store that needs a read token: pass one with --read-token-file FILE (Config.ReadToken), or --skip-payloads (Config.SkipPayloads) to check the tree only", res.err))
				return false, false, nil
			}
			a.unavailable(r, fmt.Sprintf("fetch entry bundle %d", res.ri.Index), res.err)
			return false, false, nil
		}
		if res.short != "" {
			a.addf(r, KindRootMismatch, "", nil, "%s", res.short)
			return false, false, nil
		}
		// Nothing of a bundle is recorded unless all of it is: the
		// spool (which can fail) first.
		if sp != nil {
			for _, e := range res.spool {
				if err := sp.add(e.index, e.salt, e.leaf); err != nil {
					a.unavailable(r, "write the export spool", err)
					return false, false, nil
				}
			}
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
					"leaf %d claims to be a leaf the log writes but is not one it would write: %s", b.index, b.what)
			}
		}
		for _, b := range res.badOpen {
			contentFinding(KindBadOpening, fmt.Sprint(b.index), map[string]any{"index": b.index}, "the content the log serves for leaf %d does not open its commitment: %s: the payload store was changed, or serves another entry's event", b.index, b.what)
		}
		// The bundle's missing and served contents first: its erasure
		// leaves may cover them (never what comes after an erasure).
		for _, i := range res.missing {
			pc.missing.add(i)
		}
		for _, i := range res.opened {
			pc.serve(i, size)
		}
		for _, e := range res.erasures {
			for _, er := range e.erasure.Entries {
				for _, t := range pc.missing.remove(er) {
					counts.Erased += t.To - t.From
				}
			}
			// Served after the erasure, by this check or now.
			for _, t := range unionRuns(pc.eraseAll(e.index, e.erasure.Entries), e.served) {
				contentFinding(KindErasedServed, fmt.Sprint(t.From, "-", t.To), map[string]any{"from": t.From, "to": t.To, "erasure_index": e.index},
					"the log still serves the content of %s, which erasure leaf %d erased: erased events must leave the payload store (and the search index)", rangeText(t), e.index)
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
			return false, false, fmt.Errorf("auditor: merging bundle %d: %w", res.ri.Index, err) // a bug, not the log
		}
		counts.add(res.counts)
		if save != nil && time.Since(lastSave) >= saveEvery {
			lastSave = time.Now()
			save()
		}
		progress(false)
	}
	if ctx.Err() != nil {
		return false, false, ctxErr(ctx)
	}
	progress(true)
	if leafFindings > maxLeafFindings {
		a.addf(r, KindBadLeaf, "", nil, "%d more bad leaves (%d in all)", leafFindings-maxLeafFindings, leafFindings)
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
	if contentFindings > 0 {
		ok = false
	}
	root := rfc6962.DefaultHasher.EmptyRoot()
	if rng.End() > 0 {
		var err error
		if root, err = rng.GetRootHash(nil); err != nil {
			return false, false, fmt.Errorf("auditor: computing the root: %w", err)
		}
	}
	if rng.End() != size {
		a.addf(r, KindRootMismatch, "", nil, "the log's entry bundles hold %d leaves, its checkpoint says %d", rng.End(), size)
		return false, false, nil
	}
	if !bytes.Equal(root, target.c.Hash) {
		a.addf(r, KindRootMismatch, fmt.Sprintf("root:%d:%x", size, target.c.Hash), map[string]any{"checkpoint": string(target.raw), "computed_root": b64(root)},
			"the log's %d leaves hash to root %s, but its witnessed checkpoint of that size says %s: entries were changed, dropped or added",
			size, b64(root), b64(target.c.Hash))
		return false, false, nil
	}
	// Every erasure leaf of the tree has been merged: a content still
	// missing was deleted without one.
	for _, m := range pc.missing.runs {
		contentFinding(KindMissing, fmt.Sprint(m.From, "-", m.To), map[string]any{"from": m.From, "to": m.To},
			"the log serves no content for commitment %s and no erasure leaf in its tree of size %d covers it: events were deleted without a logged erasure (an erasure made moments ago may not be in a witnessed checkpoint yet: check again)",
			rangeText(m), size)
	}
	if contentFindings > maxLeafFindings {
		a.addf(r, KindMissing, "", nil, "%d more content findings (%d in all)", contentFindings-maxLeafFindings, contentFindings)
	}
	// Erasures after this tree may erase what was served in it.
	pc.served = nil
	return true, ok, nil
}

// bundleWorker fetches, parses, hashes and checks bundles; one per worker
// goroutine, with buffers reused from one bundle to the next.
type bundleWorker struct {
	a       *Auditor
	size    uint64
	spool   bool // keep what verified, for a Sink
	buf     bytes.Buffer
	tileBuf bytes.Buffer
	payBuf  bytes.Buffer
	entries [][]byte
	commits []indexedCommitment
	h       hash.Hash
}

type indexedCommitment struct {
	index uint64
	c     checkpoint.CommitmentLeaf
}

func newBundleWorker(a *Auditor, size uint64, spool bool) *bundleWorker {
	return &bundleWorker{a: a, size: size, spool: spool, h: sha256.New(), entries: make([][]byte, 0, layout.EntryBundleWidth)}
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
		l := classifyLeaf(leaf)
		switch l.class {
		case leafEvent:
			res.counts.Event++
			if len(rules) > 0 {
				for _, name := range matchRules(rules, leaf) {
					res.counts.RuleHits++
					res.hits = append(res.hits, leafNote{idx, name, clip(leaf)})
				}
			}
			if w.spool {
				res.spool = append(res.spool, spoolEntry{index: idx, leaf: bytes.Clone(leaf)})
			}
		case leafRaw:
			res.counts.Raw++
		case leafBad:
			res.counts.Bad++
			res.bad = append(res.bad, leafNote{idx, l.why, clip(leaf)})
		case leafCommitment:
			res.counts.Commitment++
			w.commits = append(w.commits, indexedCommitment{idx, l.commitment})
			if w.spool {
				// The opening's place in index order, filled in below.
				res.spool = append(res.spool, spoolEntry{index: idx})
			}
		case leafErasure:
			if err := l.erasure.CheckAt(idx); err != nil {
				res.counts.Bad++
				res.bad = append(res.bad, leafNote{idx, err.Error(), clip(leaf)})
				break
			}
			res.counts.Erasure++
			res.erasures = append(res.erasures, indexedErasure{index: idx, erasure: l.erasure})
			if w.spool {
				res.spool = append(res.spool, spoolEntry{index: idx, leaf: bytes.Clone(leaf)})
			}
		}
	}
	res.counts.Leaves = uint64(n)
	if len(w.commits) > 0 {
		if err := w.contents(ctx, &res); err != nil {
			res.err = err
			return res
		}
	}
	if !w.a.cfg.SkipPayloads {
		for k := range res.erasures {
			if err := w.stillServed(ctx, &res.erasures[k]); err != nil {
				res.err = err
				return res
			}
		}
	}
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

// contents fetches the openings of the bundle's commitment leaves
// (w.commits) and holds each to its leaf; an error if they could not be
// read.
func (w *bundleWorker) contents(ctx context.Context, res *bundleResult) error {
	commits := w.commits
	w.commits = w.commits[:0]
	if w.a.cfg.SkipPayloads {
		res.counts.Unchecked += uint64(len(commits))
		res.dropSpool(nil)
		return nil
	}
	openings, err := w.a.log.payloads(ctx, commits[0].index, commits[len(commits)-1].index+1, &w.payBuf)
	if err != nil {
		return err
	}
	opened := map[uint64]*checkpoint.Opening{}
	for _, c := range commits {
		o := openings[c.index]
		delete(openings, c.index)
		if o == nil {
			res.missing = append(res.missing, c.index)
			continue
		}
		// The log writes no event leaf larger than a leaf: one that is
		// commits to what it could not have taken (and would not fit
		// the export spool).
		if len(o.Leaf) > checkpoint.MaxLeafSize {
			res.badOpen = append(res.badOpen, leafNote{index: c.index, what: fmt.Sprintf("its event leaf is %d bytes, more than the %d a leaf may hold", len(o.Leaf), checkpoint.MaxLeafSize)})
			continue
		}
		l, err := o.Verify(c.c)
		if err != nil {
			res.badOpen = append(res.badOpen, leafNote{index: c.index, what: err.Error()})
			continue
		}
		res.counts.Opened++
		res.opened = append(res.opened, c.index)
		opened[c.index] = o
		_ = l
		if w.a.cfg.OnOpened != nil {
			w.a.cfg.OnOpened(c.index, o.Leaf)
		}
		if rules := w.a.cfg.Rules; len(rules) > 0 {
			for _, name := range matchRules(rules, o.Leaf) {
				res.counts.RuleHits++
				res.hits = append(res.hits, leafNote{c.index, name, clip(o.Leaf)})
			}
		}
	}
	for i := range openings {
		res.badOpen = append(res.badOpen, leafNote{index: i, what: "the log serves content for it, and it is not a commitment leaf"})
	}
	slices.SortFunc(res.badOpen, func(x, y leafNote) int { return cmp.Compare(x.index, y.index) })
	res.dropSpool(opened)
	return nil
}

// stillServed asks the log again for the contents of what an erasure leaf
// erased, and records the runs it still serves: the contents an earlier
// check fetched are long forgotten when a log erases old entries.
func (w *bundleWorker) stillServed(ctx context.Context, e *indexedErasure) error {
	var s indexSet
	for _, r := range e.erasure.Entries {
		for from := r.From; from < r.To; {
			to := min(r.To, from+maxPayloadRange)
			openings, err := w.a.log.payloads(ctx, from, to, &w.payBuf)
			if err != nil {
				return err
			}
			for _, i := range slices.Sorted(maps.Keys(openings)) {
				s.add(i)
			}
			from = to
		}
	}
	e.served = s.runs
	return nil
}

// dropSpool fills in the spool entries of commitment leaves with their
// openings, and drops those without one.
func (res *bundleResult) dropSpool(opened map[uint64]*checkpoint.Opening) {
	out := res.spool[:0]
	for _, e := range res.spool {
		if e.leaf == nil {
			o := opened[e.index]
			if o == nil {
				continue
			}
			e.salt, e.leaf = o.Salt, o.Leaf
		}
		out = append(out, e)
	}
	res.spool = out
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
