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

type dedupRow struct {
	h   [16]byte
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

// variantHash names a key reused for another event: (source, key, event),
// each length-prefixed, under a label of its own so that it never equals a
// keyHash.
func variantHash(source, key string, ev [16]byte) [16]byte {
	h := sha256.New()
	var n [8]byte
	h.Write([]byte("tidemark reused key\x00"))
	for _, part := range []string{source, key} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	h.Write(ev[:])
	var sum [sha256.Size]byte
	var out [16]byte
	copy(out[:], h.Sum(sum[:0]))
	return out
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
