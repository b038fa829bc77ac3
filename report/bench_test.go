package report

import (
	"fmt"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
)

// The cost the report adds to a full check for each leaf outside the
// period (most of a log), and inside it.
func BenchmarkCollectorLeaf(b *testing.B) {
	ev := `{"action":"secret.read","actor":{"name":"alice"},"id":"x-1","resource":"prod/db/1","n":1,"pad":"` + fmt.Sprintf("%0400d", 0) + `"}`
	leaf, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(ev), t0.Add(5e9), "deploy-bot", "")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		from, to int
	}{{"outside", 10, 20}, {"inside", 0, 20}} {
		b.Run(c.name, func(b *testing.B) {
			col := newCollector(at(c.from), at(c.to))
			b.SetBytes(int64(len(leaf)))
			b.RunParallel(func(pb *testing.PB) {
				i := uint64(0)
				for pb.Next() {
					col.leaf(i, leaf)
					i++
				}
			})
		})
	}
}
