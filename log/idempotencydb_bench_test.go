package log

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
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

// BenchmarkSQLiteIndexRequestPrefilled is BenchmarkSQLiteIndexRequest on
// an index of realistic size: BENCH_KEYS keys (2,000,000 unless set),
// written in sorted batches of 65,536 random keys as the writer writes them.
// The filled index is kept in the temporary directory (TMPDIR) for the next
// run, and each run works on a copy (go test -run X -bench
// SQLiteIndexRequestPrefilled -benchtime 200x ./log).
func BenchmarkSQLiteIndexRequestPrefilled(b *testing.B) {
	n := 2_000_000
	if s := os.Getenv("BENCH_KEYS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	tmpl := filepath.Join(os.TempDir(), fmt.Sprintf("tidemark-bench-index-%d%s.db", n, os.Getenv("BENCH_TAG")))
	ctx := context.Background()
	if _, err := os.Stat(tmpl); err != nil {
		d := openTestIndex(b, tmpl+".tmp")
		if ps := os.Getenv("BENCH_PAGE_SIZE"); ps != "" {
			// An experiment: the page size of an empty database, which WAL
			// mode fixes once set.
			for _, q := range []string{"PRAGMA journal_mode=DELETE", "PRAGMA page_size=" + ps, "VACUUM", "PRAGMA journal_mode=WAL"} {
				if _, err := d.store.(*sqlKeys).db.Exec(q); err != nil {
					b.Fatal(err)
				}
			}
		}
		rows := make([]indexRow, 1<<16)
		for done := 0; done < n; done += len(rows) {
			rows = rows[:min(len(rows), n-done)]
			for i := range rows {
				var h [16]byte
				rand.Read(h[:])
				rows[i] = indexRow{id: keyOf(h), idx: uint64(done + i)}
				rand.Read(rows[i].ev[:])
			}
			slices.SortFunc(rows, func(a, b indexRow) int { return bytes.Compare(a.id[:], b.id[:]) })
			if err := inTx(ctx, d.store, func(tx keyTx) error { return tx.insertComplete(ctx, rows) }); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.store.markBuilt(ctx); err != nil {
			b.Fatal(err)
		}
		if err := d.Close(); err != nil { // checkpoints the WAL into the file
			b.Fatal(err)
		}
		if err := os.Rename(tmpl+".tmp", tmpl); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(b.TempDir(), indexFile)
	raw, err := os.ReadFile(tmpl)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	d := openTestIndex(b, path)
	defer d.Close()
	idx := uint64(n)
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
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for b.Loop() {
		request()
	}
	// The rows still waiting are written at Close: part of the cost.
	d.Close()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) - syscall.TimevalToNsec(ru0.Utime) + syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Stime))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*1000), "cpu-µs/key")
}
