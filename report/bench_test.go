package report

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidemark/tidemark/auditor"
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

// The full check alone, and with the report's collector on every leaf, over
// a log of 65,536 event leaves served on loopback (b.N full checks each):
// the difference is what a report adds to `tidemark audit --full`.
func BenchmarkFullCheck(b *testing.B) {
	const n = 1 << 16
	leaves := make([][]byte, n)
	for i := range leaves {
		ev := fmt.Sprintf(`{"action":"deploy.create","actor":"ci","id":"e-%d","pad":"%0300d","resource":"prod/app/%d"}`, i, i, i%97)
		leaf, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(ev), at(i/1000), "ci", "")
		if err != nil {
			b.Fatal(err)
		}
		leaves[i] = leaf
	}
	l, root := newStaticLog(b, leaves, nil)
	skey, vkey, _ := checkpoint.GenerateLogKey("example.com/log")
	signer, _ := checkpoint.NewLogSigner(skey)
	signed, _ := checkpoint.Sign(checkpoint.Checkpoint{Origin: "example.com/log", Size: n, Hash: root}, signer)
	os.WriteFile(filepath.Join(l.dir, "checkpoint"), signed, 0o644)
	p, err := checkpoint.ParsePolicy([]byte(fmt.Sprintf("log %s %s\nquorum none\n", vkey, l.srv.URL)))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		from, to int
	}{{"audit", 0, 0}, {"report-empty-period", 1000, 2000}, {"report-whole-log", 0, 1000}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				cfg := auditor.Config{Policy: p, Workers: 4, Compression: "identity"}
				if c.to > 0 {
					col := newCollector(at(c.from), at(c.to))
					cfg.OnLeaf, cfg.OnOpened = col.leaf, col.opened
				}
				a, err := auditor.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				r, err := a.Full(context.Background())
				if err != nil || !r.Full.Verified {
					b.Fatalf("%v %+v", err, r.Findings)
				}
				a.Close()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
		})
	}
}
