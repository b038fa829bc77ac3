package log

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"testing"
)

// BenchmarkSQLiteClaimComplete is one request of 1,000 new keys: the
// lookup, claims and completions the writer does for it, on the SQLite
// store of a POSIX log (go test -run X -bench ClaimComplete ./log).
func BenchmarkSQLiteClaimComplete(b *testing.B) {
	d := openTestIndex(b, filepath.Join(b.TempDir(), indexFile))
	defer d.Close()
	k := d.store
	ctx := context.Background()
	idx := uint64(0)
	for b.Loop() {
		hs := make([][16]byte, 1000)
		claims := make([]newClaim, 1000)
		done := make([]completion, 1000)
		for i := range claims {
			rand.Read(hs[i][:])
			claims[i] = newClaim{id: keyOf(hs[i])}
			done[i] = completion{id: keyOf(hs[i]), idx: idx}
			idx++
		}
		if err := inTx(ctx, k, func(tx keyTx) error {
			if _, err := tx.lookup(ctx, hs); err != nil {
				return err
			}
			_, err := tx.insertClaims(ctx, d.owner, 0, claims)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		if err := inTx(ctx, k, func(tx keyTx) error {
			_, err := tx.complete(ctx, d.owner, done)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSQLiteIndexRequest is what the idempotency index of a POSIX log
// does for one request of 1,000 events with new "id" keys, as the server
// calls it: begin (the writer looks the keys up and claims them in memory)
// and finish (the writer inserts the complete rows), on an index that
// already holds keys (go test -run X -bench SQLiteIndexRequest ./log).
func BenchmarkSQLiteIndexRequest(b *testing.B) {
	d := openTestIndex(b, filepath.Join(b.TempDir(), indexFile))
	defer d.Close()
	ctx := context.Background()
	idx := uint64(0)
	request := func() {
		evs := make([]keyedEvent, 1000)
		for i := range evs {
			var k [12]byte
			rand.Read(k[:])
			evs[i] = keyedEvent{key: "i:s:" + hex.EncodeToString(k[:])}
			rand.Read(evs[i].ev[:])
		}
		bt, err := d.begin(ctx, "bench", evs)
		if err != nil {
			b.Fatal(err)
		}
		written := make(map[int]uint64, len(evs))
		for i := range evs {
			written[i] = idx
			idx++
		}
		bt.finish(written, nil)
	}
	for range 200 { // 200,000 keys before the clock starts
		request()
	}
	b.ResetTimer()
	for b.Loop() {
		request()
	}
}
