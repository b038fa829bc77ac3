package report

import (
	"bytes"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/search"
)

// bundleWidth is how many leaves one bitmap of the collector covers (the
// width of an entry bundle, though nothing depends on that).
const bundleWidth = 256

// bitmap marks indexes of one run of bundleWidth leaves.
type bitmap [bundleWidth / 64]uint64

// indexSet is a set of leaf indexes, one bitmap per run of bundleWidth
// touched: a few bytes per leaf whatever the order they come in.
type indexSet map[uint64]*bitmap

func (s indexSet) add(i uint64) {
	b := s[i/bundleWidth]
	if b == nil {
		b = new(bitmap)
		s[i/bundleWidth] = b
	}
	j := i % bundleWidth
	b[j/64] |= 1 << (j % 64)
}

func (s indexSet) has(i uint64) bool {
	b := s[i/bundleWidth]
	j := i % bundleWidth
	return b != nil && b[j/64]&(1<<(j%64)) != 0
}

// countIn counts the members in [from, to), and adds them to into if not nil.
func (s indexSet) countIn(from, to uint64, into indexSet) uint64 {
	if from >= to || len(s) == 0 {
		return 0
	}
	var n uint64
	visit := func(k uint64) {
		b := s[k]
		if b == nil {
			return
		}
		lo, hi := k*bundleWidth, (k+1)*bundleWidth
		for w := range b {
			word := b[w]
			for word != 0 {
				j := uint64(bits.TrailingZeros64(word))
				word &= word - 1
				if i := lo + uint64(w)*64 + j; i >= from && i < to && i < hi {
					n++
					if into != nil {
						into.add(i)
					}
				}
			}
		}
	}
	first, last := from/bundleWidth, (to-1)/bundleWidth
	if last-first+1 > uint64(len(s)) {
		// A range wider than what the set holds: visit the set's bitmaps.
		for k := range s {
			if k >= first && k <= last {
				visit(k)
			}
		}
		return n
	}
	for k := first; k <= last; k++ {
		visit(k)
	}
	return n
}

// erasureAt is an erasure leaf and its index.
type erasureAt struct {
	Index uint64
	checkpoint.Erasure
}

// collector gathers the report's figures from the leaves a full check
// reads. Its leaf method is Config.OnLeaf: called concurrently, in no
// order, so every figure is order-independent (sums, minimums, maximums,
// sets).
type collector struct {
	fromS, toS string // the period in checkpoint.ReceivedFormat: such times sort as text

	mu sync.Mutex
	// The whole log.
	unparsed          uint64
	logFirst, logLast string // received, as text
	erasures          []erasureAt
	// The period.
	inPeriod, commitInPeriod indexSet
	p                        periodCounts
}

type periodCounts struct {
	entries, events, commitments, erasures, unparsed uint64
	opened                                           uint64
	firstIndex, lastIndex                            uint64
	firstRcv, lastRcv                                string
	bySource, byAction, byOutcome                    map[string]uint64
	eventsBySource                                   map[string]uint64
}

func newCollector(from, to time.Time) *collector {
	return &collector{
		fromS:    from.UTC().Format(checkpoint.ReceivedFormat),
		toS:      to.UTC().Format(checkpoint.ReceivedFormat),
		inPeriod: indexSet{}, commitInPeriod: indexSet{},
		p: periodCounts{
			bySource: map[string]uint64{}, byAction: map[string]uint64{}, byOutcome: map[string]uint64{},
			eventsBySource: map[string]uint64{},
		},
	}
}

var receivedKey = []byte(`"received":"`)

// receivedOf returns the top-level "received" of a v1 or v2 leaf as text,
// without parsing the leaf: the last `"received":"` in it is the top-level
// member, because members sort ("received" comes after "commitment",
// "erasure", "event" and "idempotency_key") and the members after it,
// "source" and "v", hold a string (in which a quote is escaped) and a
// number. The parse functions check the rest.
func receivedOf(b []byte) (string, bool) {
	i := bytes.LastIndex(b, receivedKey)
	if i < 0 {
		return "", false
	}
	i += len(receivedKey)
	n := len(checkpoint.ReceivedFormat)
	if len(b)-i < n+1 || b[i+n] != '"' {
		return "", false
	}
	return string(b[i : i+n]), true
}

// leaf takes one leaf of the log.
func (c *collector) leaf(index uint64, b []byte) {
	k := kindOf(b)
	if k == checkpoint.KindRaw {
		return
	}
	rcv, ok := receivedOf(b)
	in := ok && rcv >= c.fromS && rcv < c.toS
	var (
		source        string
		fields        search.Fields
		erasure       checkpoint.Erasure
		parsed        bool
		needFullParse = in || k == checkpoint.KindErasure
	)
	if needFullParse {
		switch k {
		case checkpoint.KindEvent:
			if l, err := checkpoint.ParseLeaf(b); err == nil {
				source, parsed = l.Source, true
				fields = search.Extract(l.Event, nil)
			}
		case checkpoint.KindCommitment:
			if cl, err := checkpoint.ParseCommitmentLeaf(b); err == nil {
				source, parsed = cl.Source, true
			}
		case checkpoint.KindErasure:
			// An erasure of its own index or beyond is a bad leaf to the
			// auditor, and so to the report.
			if e, err := checkpoint.ParseErasureLeaf(b); err == nil && e.CheckAt(index) == nil {
				erasure, source, parsed = e, e.Source, true
			}
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if k == checkpoint.KindErasure && parsed {
		c.erasures = append(c.erasures, erasureAt{index, erasure})
	}
	if needFullParse && !parsed {
		// The auditor reports it (bad-leaf); its figures count nowhere.
		c.unparsed++
		if in {
			c.p.unparsed++
		}
		return
	}
	if ok {
		if c.logFirst == "" || rcv < c.logFirst {
			c.logFirst = rcv
		}
		if rcv > c.logLast {
			c.logLast = rcv
		}
	}
	if !in {
		return
	}
	p := &c.p
	if p.entries == 0 || index < p.firstIndex {
		p.firstIndex = index
	}
	if p.entries == 0 || index > p.lastIndex {
		p.lastIndex = index
	}
	if p.firstRcv == "" || rcv < p.firstRcv {
		p.firstRcv = rcv
	}
	if rcv > p.lastRcv {
		p.lastRcv = rcv
	}
	p.entries++
	c.inPeriod.add(index)
	p.bySource[source]++
	switch k {
	case checkpoint.KindEvent:
		p.events++
		p.eventsBySource[source]++
		p.byAction[fields.Action]++
		p.byOutcome[fields.Outcome]++
	case checkpoint.KindCommitment:
		p.commitments++
		c.commitInPeriod.add(index)
	case checkpoint.KindErasure:
		p.erasures++
	}
}

// opened takes the event of a commitment leaf, once the auditor verified
// its opening against the commitment (which binds its received time and
// source to the commitment leaf's).
func (c *collector) opened(index uint64, eventLeaf []byte) {
	rcv, ok := receivedOf(eventLeaf)
	if !ok || rcv < c.fromS || rcv >= c.toS {
		return
	}
	l, err := checkpoint.ParseLeaf(eventLeaf)
	if err != nil {
		return // not reached: Opening.Verify parsed it
	}
	f := search.Extract(l.Event, nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p.opened++
	c.p.eventsBySource[l.Source]++
	c.p.byAction[f.Action]++
	c.p.byOutcome[f.Outcome]++
}

// erasureFigures returns the erasure leaves received in the period, those
// (wherever they are) whose ranges cover entries of the period, and how
// many of the period's commitment leaves some erasure covers. Call it once
// every leaf is in.
func (c *collector) erasureFigures() (inPeriod, covering []Erasure, erased uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.SortFunc(c.erasures, func(a, b erasureAt) int {
		switch {
		case a.Index < b.Index:
			return -1
		case a.Index > b.Index:
			return 1
		}
		return 0
	})
	union := indexSet{}
	for _, e := range c.erasures {
		var covered, commits uint64
		for _, r := range e.Entries {
			covered += c.inPeriod.countIn(r.From, r.To, nil)
			commits += c.commitInPeriod.countIn(r.From, r.To, union)
		}
		rcv := e.Received.UTC().Format(checkpoint.ReceivedFormat)
		in := rcv >= c.fromS && rcv < c.toS
		if !in && covered == 0 {
			continue
		}
		ranges := make([][2]uint64, len(e.Entries))
		var n uint64
		for i, r := range e.Entries {
			ranges[i] = [2]uint64{r.From, r.To}
			n += r.To - r.From
		}
		er := Erasure{
			Index: e.Index, Received: e.Received.UTC(), Source: e.Source, Reason: e.Reason,
			Ranges: ranges, Entries: n, PeriodEntries: covered, PeriodCommitments: commits,
		}
		if in {
			inPeriod = append(inPeriod, er)
		}
		if covered > 0 {
			covering = append(covering, er)
		}
	}
	for _, b := range union {
		for _, w := range b {
			erased += uint64(bits.OnesCount64(w))
		}
	}
	return inPeriod, covering, erased
}
