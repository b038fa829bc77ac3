package report

import (
	"bytes"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// leafKind is what the report makes of a leaf. The checkpoint package
// decides (KindOf, and the parse functions validate); this file only maps
// its answers.
type leafKind uint8

const (
	kindRaw        leafKind = iota // bytes from POST /add: no received time, no source
	kindEvent                      // an event leaf (v1)
	kindCommitment                 // a commitment leaf (v2): received and source public, the event not
	kindErasure                    // an erasure leaf (v2)
)

// erasureLeaf is a parsed erasure leaf.
type erasureLeaf struct {
	Received time.Time
	Source   string
	Entries  [][2]uint64 // half-open [from, to)
	Reason   string
}

var (
	eventPrefix      = []byte(`{"event":`)
	commitmentPrefix = []byte(`{"commitment":"`)
	erasurePrefix    = []byte(`{"erasure":{`)
)

// kindOf classifies b by what it claims to be. The leaves the log writes
// are known by their first member, at once: checkpoint.KindOf parses them
// to tell a canonical leaf from a claim, which the auditor does already
// and the report does for the leaves it reads (the period's, erasures);
// anything else goes to checkpoint.KindOf.
func kindOf(b []byte) leafKind {
	switch {
	case bytes.HasPrefix(b, eventPrefix):
		return kindEvent
	case bytes.HasPrefix(b, commitmentPrefix):
		return kindCommitment
	case bytes.HasPrefix(b, erasurePrefix):
		return kindErasure
	}
	switch checkpoint.KindOf(b) {
	case checkpoint.KindEvent:
		return kindEvent
	case checkpoint.KindCommitment:
		return kindCommitment
	case checkpoint.KindErasure:
		return kindErasure
	}
	return kindRaw
}

func parseCommitment(b []byte) (received time.Time, source string, err error) {
	c, err := checkpoint.ParseCommitmentLeaf(b)
	return c.Received, c.Source, err
}

func parseErasure(b []byte) (erasureLeaf, error) {
	e, err := checkpoint.ParseErasureLeaf(b)
	if err != nil {
		return erasureLeaf{}, err
	}
	out := erasureLeaf{Received: e.Received, Source: e.Source, Reason: e.Reason, Entries: make([][2]uint64, len(e.Entries))}
	for i, r := range e.Entries {
		out.Entries[i] = [2]uint64{r.From, r.To}
	}
	return out, nil
}
