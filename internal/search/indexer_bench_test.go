package search

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// BenchmarkIndexRows measures the indexer's two costs per row: making it
// from a leaf (ParseLeaf and Extract) and committing it (SQLite table,
// secondary indexes and full-text index), on chunks of 4,096 leaves of
// about 500 bytes.
func BenchmarkIndexRows(b *testing.B) {
	st, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "s.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := rand.New(rand.NewSource(1))
	mk := func(i int) []byte {
		ev := fmt.Sprintf(`{"actor":"user-%d","action":"act-%d","resource":"prod/db/%d","outcome":"success","details":{"note":"some text here about the event number %d with words","pad":"%0300d"}}`, r.Intn(10000), r.Intn(50), r.Intn(1000), i, i)
		leaf, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(ev), time.Now(), "bench", "")
		if err != nil {
			b.Fatal(err)
		}
		return leaf
	}
	const chunk = 4096
	leaves := make([][]byte, chunk)
	for i := range leaves {
		leaves[i] = mk(i)
	}
	b.ResetTimer()
	var parse, commit time.Duration
	from := uint64(0)
	for n := 0; n < b.N; n++ {
		t0 := time.Now()
		rows := make([]Row, 0, chunk)
		for i, l := range leaves {
			row, ok := RowOf(from+uint64(i), l, nil)
			if !ok {
				b.Fatal("not a leaf")
			}
			rows = append(rows, row)
		}
		t1 := time.Now()
		if ok, err := st.Commit(context.Background(), from, from+chunk, rows); !ok || err != nil {
			b.Fatal(ok, err)
		}
		parse += t1.Sub(t0)
		commit += time.Since(t1)
		from += chunk
	}
	b.ReportMetric(float64(parse.Microseconds())/float64(b.N*chunk), "parse-us/row")
	b.ReportMetric(float64(commit.Microseconds())/float64(b.N*chunk), "commit-us/row")
}
