package log

import (
	"context"
	"crypto/rand"
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
