// TEMPORARY stub of the issue 14 spec's API for the auditor branch, replaced
// by the lead's checkpoint/commitment.go at merge. Do not merge.
package checkpoint

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

const SaltSize = 32
const MaxErasureRanges = 1024
const MaxErasureReason = 1024

type LeafKind int

const (
	KindRaw LeafKind = iota
	KindEvent
	KindCommitment
	KindErasure
)

func KindOf(b []byte) LeafKind {
	switch {
	case bytes.HasPrefix(b, []byte(`{"event":`)):
		return KindEvent
	case bytes.HasPrefix(b, []byte(`{"commitment":`)):
		return KindCommitment
	case bytes.HasPrefix(b, []byte(`{"erasure":`)):
		return KindErasure
	}
	return KindRaw
}

type CommitmentLeaf struct {
	Received   time.Time
	Source     string
	Commitment [32]byte
}

func AppendCommitmentLeaf(dst []byte, c CommitmentLeaf) []byte {
	dst = append(dst, `{"commitment":"`...)
	dst = hex.AppendEncode(dst, c.Commitment[:])
	dst = append(dst, `","received":"`...)
	dst = append(dst, c.Received.UTC().Format(ReceivedFormat)...)
	dst = append(dst, `","source":`...)
	s, _ := json.Marshal(c.Source)
	dst = append(dst, s...)
	return append(dst, `,"v":2}`...)
}

func ParseCommitmentLeaf(b []byte) (CommitmentLeaf, error) {
	var m struct {
		Commitment, Received, Source string
		V                            int
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return CommitmentLeaf{}, err
	}
	var c CommitmentLeaf
	h, err := hex.DecodeString(m.Commitment)
	if err != nil || len(h) != 32 {
		return c, errors.New("bad commitment")
	}
	copy(c.Commitment[:], h)
	c.Received, err = time.Parse(ReceivedFormat, m.Received)
	if err != nil {
		return c, err
	}
	c.Source = m.Source
	if !bytes.Equal(AppendCommitmentLeaf(nil, c), b) {
		return c, errors.New("commitment leaf: not in canonical form")
	}
	return c, nil
}

func Commit(salt, eventLeaf []byte) [32]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(eventLeaf)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func NewSalt() ([]byte, error) {
	b := make([]byte, SaltSize)
	_, err := rand.Read(b)
	return b, err
}

type Opening struct {
	Salt []byte `json:"salt"`
	Leaf []byte `json:"leaf"`
}

func (o Opening) Verify(c CommitmentLeaf) (Leaf, error) {
	if len(o.Salt) != SaltSize {
		return Leaf{}, errors.New("opening: salt is not 32 bytes")
	}
	if Commit(o.Salt, o.Leaf) != c.Commitment {
		return Leaf{}, errors.New("opening: does not match the commitment")
	}
	l, err := ParseLeaf(o.Leaf)
	if err != nil {
		return Leaf{}, err
	}
	if !l.Received.Equal(c.Received) || l.Source != c.Source {
		return Leaf{}, errors.New("opening: received or source differ")
	}
	return l, nil
}

type IndexRange struct{ From, To uint64 }

func (r IndexRange) MarshalJSON() ([]byte, error) {
	return []byte("[" + strconv.FormatUint(r.From, 10) + "," + strconv.FormatUint(r.To, 10) + "]"), nil
}

func (r *IndexRange) UnmarshalJSON(b []byte) error {
	var a [2]uint64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	r.From, r.To = a[0], a[1]
	return nil
}

type Erasure struct {
	Received time.Time
	Source   string
	Entries  []IndexRange
	Reason   string
}

func AppendErasureLeaf(dst []byte, e Erasure) ([]byte, error) {
	if len(e.Entries) == 0 || len(e.Entries) > MaxErasureRanges || e.Reason == "" {
		return nil, errors.New("bad erasure")
	}
	for i, r := range e.Entries {
		if r.From >= r.To || i > 0 && r.From <= e.Entries[i-1].To {
			return nil, errors.New("bad erasure ranges")
		}
	}
	er, _ := json.Marshal(struct {
		Entries []IndexRange `json:"entries"`
		Reason  string       `json:"reason"`
	}{e.Entries, e.Reason})
	src, _ := json.Marshal(e.Source)
	dst = append(dst, `{"erasure":`...)
	dst = append(dst, er...)
	dst = append(dst, `,"received":"`...)
	dst = append(dst, e.Received.UTC().Format(ReceivedFormat)...)
	dst = append(dst, `","source":`...)
	dst = append(dst, src...)
	return append(dst, `,"v":2}`...), nil
}

func ParseErasureLeaf(b []byte) (Erasure, error) {
	var m struct {
		Erasure struct {
			Entries []IndexRange
			Reason  string
		}
		Received, Source string
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Erasure{}, err
	}
	t, err := time.Parse(ReceivedFormat, m.Received)
	if err != nil {
		return Erasure{}, err
	}
	e := Erasure{Received: t, Source: m.Source, Entries: m.Erasure.Entries, Reason: m.Erasure.Reason}
	again, err := AppendErasureLeaf(nil, e)
	if err != nil {
		return Erasure{}, err
	}
	if !bytes.Equal(again, b) {
		return Erasure{}, fmt.Errorf("erasure leaf: not canonical")
	}
	return e, nil
}

func (e Erasure) Covers(i uint64) bool {
	for _, r := range e.Entries {
		if r.From <= i && i < r.To {
			return true
		}
	}
	return false
}
