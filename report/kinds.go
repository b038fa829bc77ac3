package report

import (
	"bytes"
	"errors"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// leafKind is what the report makes of a leaf. The checkpoint package
// decides; this file only maps its answers.
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

var errNotYet = errors.New("this build does not parse commitment and erasure leaves")

// kindOf classifies b by its shape; the parse functions validate.
func kindOf(b []byte) leafKind {
	if checkpoint.ClaimsEventLeaf(b) || bytes.HasPrefix(b, []byte(`{"event":`)) {
		return kindEvent
	}
	return kindRaw
}

func parseCommitment(b []byte) (received time.Time, source string, err error) {
	return time.Time{}, "", errNotYet
}

func parseErasure(b []byte) (erasureLeaf, error) {
	return erasureLeaf{}, errNotYet
}
