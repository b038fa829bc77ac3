package log

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/tidemark/tidemark/checkpoint"
)

// leafKey returns the idempotency key of an event leaf, if it has one, and
// the eventHash of its event.
func leafKey(leaf []byte) (source, key string, ev [16]byte, ok bool) {
	l, err := checkpoint.ParseLeaf(leaf)
	if err != nil {
		return "", "", ev, false // a raw entry
	}
	if l.IdempotencyKey != "" {
		return l.Source, "k:" + l.IdempotencyKey, eventHash(l.Event), true
	}
	e, err := checkpoint.CanonicalEvent(l.Event)
	if err != nil || e.ID.IsZero() {
		return "", "", ev, false
	}
	return l.Source, "i:" + e.ID.Key(), eventHash(l.Event), true
}

type indexRow struct {
	id  keyID
	idx uint64
	ev  [16]byte
}

// keyHash names a (source, key) pair: the first 16 bytes of SHA-256 over
// both, length-prefixed. A collision (about 2^-64 after 2^32 keys) is as
// unlikely as a forged hash.
func keyHash(source, key string) [16]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(source)))
	h.Write(n[:])
	h.Write([]byte(source))
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	var out [16]byte
	copy(out[:], h.Sum(sum[:0]))
	return out
}

// A keyID names a row of the idempotency index: a key's own row is its
// keyHash with zeros after it; a key reused for another event (a variant)
// is the keyHash followed by that event's eventHash. The index orders rows
// by keyID, so one lookup of a keyHash finds the key and all its variants.
type keyID [32]byte

// keyOf is the row of key hash h itself.
func keyOf(h [16]byte) (id keyID) {
	copy(id[:16], h[:])
	return id
}

// variantOf is the row of event ev logged under key hash h that was used
// before for another event.
func variantOf(h, ev [16]byte) (id keyID) {
	copy(id[:16], h[:])
	copy(id[16:], ev[:])
	return id
}

// base is the key hash of a row.
func (id keyID) base() (h [16]byte) {
	copy(h[:], id[:16])
	return h
}

// eventHash names an event: the first 16 bytes of SHA-256 over its
// canonical JSON. Two events under one key are the same event (a retry)
// exactly when these are equal; 128 bits leave no room for a sender to
// craft a second event that passes for the first.
func eventHash(canonical []byte) [16]byte {
	sum := sha256.Sum256(canonical)
	var out [16]byte
	copy(out[:], sum[:16])
	return out
}
