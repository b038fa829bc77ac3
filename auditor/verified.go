package auditor

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tidemark/tidemark/checkpoint"
)

// Verified leaves
//
// A full check can hand what it verified to a [Sink]: every event (event
// leaves, and commitment leaves with the opening that proves their event)
// and every erasure leaf, in index order, with the witnessed checkpoint
// whose root they were checked against. The check cannot know that a leaf
// is in the checkpoint's tree until the last bundle is merged and the root
// compared, so nothing reaches the Sink before then: leaves are spooled to
// a file as they are checked (memory stays bounded whatever the log's
// size; the disk holds about the size of the events) and replayed to the
// Sink once the root matched. With a state directory the spool is
// full.spool in it, and its length is saved with the check's progress, so
// an interrupted check resumes its spool too and no event is skipped; a
// check that ends on a root mismatch ships nothing. Without one it is a
// temporary file, removed at the end.
//
// A check resumed from earlier progress (the state directory) ships the
// leaves checked since: run it against a fresh state directory to ship
// everything from leaf 0.

// A VerifiedLeaf is one leaf a full check verified.
type VerifiedLeaf struct {
	Index uint64
	// Kind is checkpoint.KindEvent (an event leaf), KindCommitment (a
	// commitment leaf whose content the log served and that opens it) or
	// KindErasure.
	Kind checkpoint.LeafKind
	// Event is the event leaf: the leaf itself, or the opened content of a
	// commitment leaf. Zero for an erasure.
	Event checkpoint.Leaf
	// EventLeaf is Event's canonical bytes.
	EventLeaf []byte
	// Opening proves Event for a commitment leaf: Commit(Opening.Salt,
	// EventLeaf) is the leaf's commitment.
	Opening *checkpoint.Opening
	// Erasure is an erasure leaf's content.
	Erasure *checkpoint.Erasure
}

// VerifiedCheckpoint is the witnessed checkpoint the leaves were checked
// against.
type VerifiedCheckpoint struct {
	checkpoint.Checkpoint
	// Note is the signed note as the log served it: the checkpoint, the
	// log's signature and the witnesses' cosignatures.
	Note []byte
}

// A Sink receives what a full check verified (Config.Sink).
type Sink interface {
	// Ship is called once per full check whose recomputed root matched
	// cp's, with the verified leaves in index order (leaves.Next until
	// io.EOF). An error is reported as a finding (unavailable) and the
	// leaves are offered again by the next check with the same state
	// directory.
	Ship(ctx context.Context, cp VerifiedCheckpoint, leaves *LeafReader) error
}

// SinkFunc is a function as a Sink.
type SinkFunc func(ctx context.Context, cp VerifiedCheckpoint, leaves *LeafReader) error

// Ship calls f.
func (f SinkFunc) Ship(ctx context.Context, cp VerifiedCheckpoint, leaves *LeafReader) error {
	return f(ctx, cp, leaves)
}

// spoolFile is the spool's name in the state directory.
const spoolFile = "full.spool"

// spoolState is the spool's record in full.json.
type spoolState struct {
	From uint64 `json:"from"` // first leaf index it holds (or would)
	Size int64  `json:"size"` // bytes written when the progress was saved
}

// spool holds verified leaves until the root is checked. Each entry:
// index (uint64), salt length (1 byte: 0 or checkpoint.SaltSize), leaf
// length (uint32), salt, leaf; big-endian.
type spool struct {
	f    *os.File
	w    *bufio.Writer
	temp bool
	size int64
	from uint64
}

// openSpool opens the spool for a check starting at leaf from: the state
// directory's, continued if st records one that matches, else a new one.
func openSpool(dir string, st *spoolState, from uint64) (*spool, error) {
	if dir == "" {
		f, err := os.CreateTemp("", "tidemark-audit-spool-*")
		if err != nil {
			return nil, fmt.Errorf("auditor: couldn't create the export spool: %w", err)
		}
		return &spool{f: f, w: bufio.NewWriterSize(f, 1<<20), temp: true, from: from}, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, spoolFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auditor: couldn't open the export spool: %w", err)
	}
	s := &spool{f: f, from: from}
	if st != nil && st.From <= from {
		if fi, err := f.Stat(); err == nil && fi.Size() >= st.Size {
			s.size, s.from = st.Size, st.From
		}
	}
	if err := f.Truncate(s.size); err != nil {
		f.Close()
		return nil, fmt.Errorf("auditor: couldn't truncate the export spool: %w", err)
	}
	if _, err := f.Seek(s.size, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	s.w = bufio.NewWriterSize(f, 1<<20)
	return s, nil
}

// add appends a leaf: an event leaf, an erasure leaf, or with salt the
// event leaf a commitment leaf opens to.
func (s *spool) add(index uint64, salt, leaf []byte) error {
	var h [13]byte
	binary.BigEndian.PutUint64(h[:], index)
	h[8] = byte(len(salt))
	binary.BigEndian.PutUint32(h[9:], uint32(len(leaf)))
	s.w.Write(h[:])
	s.w.Write(salt)
	_, err := s.w.Write(leaf)
	s.size += int64(len(h) + len(salt) + len(leaf))
	return err
}

// sync makes what was added durable and returns the record to save.
func (s *spool) sync() (*spoolState, error) {
	if err := s.w.Flush(); err != nil {
		return nil, err
	}
	if !s.temp {
		if err := s.f.Sync(); err != nil {
			return nil, err
		}
	}
	return &spoolState{From: s.from, Size: s.size}, nil
}

// reader reads the spool from its start.
func (s *spool) reader() (*LeafReader, error) {
	if err := s.w.Flush(); err != nil {
		return nil, err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return &LeafReader{r: bufio.NewReaderSize(io.LimitReader(s.f, s.size), 1<<20)}, nil
}

// close closes the spool; remove also deletes it.
func (s *spool) close(remove bool) {
	name := s.f.Name()
	s.f.Close()
	if remove || s.temp {
		os.Remove(name)
	}
}

// A LeafReader reads the leaves a full check verified, in index order.
type LeafReader struct {
	r     *bufio.Reader
	count *uint64 // events returned, if set
}

// Next returns the next leaf, or io.EOF after the last.
func (lr *LeafReader) Next() (VerifiedLeaf, error) {
	var h [13]byte
	if _, err := io.ReadFull(lr.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return VerifiedLeaf{}, io.EOF
		}
		return VerifiedLeaf{}, fmt.Errorf("auditor: reading the export spool: %w", err)
	}
	v := VerifiedLeaf{Index: binary.BigEndian.Uint64(h[:])}
	saltLen, leafLen := int(h[8]), int(binary.BigEndian.Uint32(h[9:]))
	if leafLen > checkpoint.MaxLeafSize || saltLen != 0 && saltLen != checkpoint.SaltSize {
		return VerifiedLeaf{}, errors.New("auditor: the export spool is corrupt")
	}
	b := make([]byte, saltLen+leafLen)
	if _, err := io.ReadFull(lr.r, b); err != nil {
		return VerifiedLeaf{}, fmt.Errorf("auditor: reading the export spool: %w", err)
	}
	salt, leaf := b[:saltLen], b[saltLen:]
	if checkpoint.KindOf(leaf) == checkpoint.KindErasure && saltLen == 0 {
		e, err := checkpoint.ParseErasureLeaf(leaf)
		if err != nil {
			return VerifiedLeaf{}, fmt.Errorf("auditor: the export spool is corrupt: %w", err)
		}
		v.Kind, v.Erasure = checkpoint.KindErasure, &e
		return v, nil
	}
	l, err := checkpoint.ParseLeaf(leaf)
	if err != nil {
		return VerifiedLeaf{}, fmt.Errorf("auditor: the export spool is corrupt: %w", err)
	}
	v.Kind, v.Event, v.EventLeaf = checkpoint.KindEvent, l, leaf
	if saltLen > 0 {
		v.Kind, v.Opening = checkpoint.KindCommitment, &checkpoint.Opening{Salt: salt, Leaf: leaf}
	}
	if lr.count != nil {
		*lr.count++
	}
	return v, nil
}
