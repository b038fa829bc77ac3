package witness

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// BenchmarkAddCheckpoint is POST /add-checkpoint through the witness's
// handler (no network), durable, one request at a time, each advancing one
// of 1,000 logs by one entry with a valid proof; the bodies are signed before
// the clock starts. Its allocations are what to watch (-benchmem); its time
// on a shared machine is noise.
func BenchmarkAddCheckpoint(b *testing.B) {
	const nLogs = 1000
	dir := b.TempDir()
	tree := testonly.New(rfc6962.DefaultHasher)
	steps := b.N/nLogs + 3
	for i := 0; i <= steps+1; i++ {
		tree.AppendData(fmt.Appendf(nil, "entry %d", i))
	}
	proofs := make([]string, steps+1)
	for k := 1; k <= steps; k++ {
		p, err := tree.ConsistencyProof(uint64(k), uint64(k+1))
		if err != nil {
			b.Fatal(err)
		}
		proofs[k] = body(uint64(k), p, nil) // "old k\n<proof lines>\n", the checkpoint to follow
	}
	list := "logs/v0\n"
	type blog struct {
		origin string
		skey   string
	}
	logs := make([]blog, nLogs)
	for i := range logs {
		origin := fmt.Sprintf("bench.example/log%04d", i)
		skey, vkey, err := checkpoint.GenerateLogKey(origin)
		if err != nil {
			b.Fatal(err)
		}
		logs[i] = blog{origin, skey}
		list += "vkey " + vkey + "\nqpd 864000000\n"
	}
	logsFile := filepath.Join(dir, "logs")
	if err := os.WriteFile(logsFile, []byte(list), 0o644); err != nil {
		b.Fatal(err)
	}
	request := func(i, j int) string {
		l := logs[i]
		s, _ := checkpoint.NewLogSigner(l.skey)
		size := uint64(1 + j)
		signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: l.origin, Size: size, Hash: tree.HashAt(size)}, s)
		if err != nil {
			b.Fatal(err)
		}
		if j == 0 {
			return "old 0\n\n" + string(signed)
		}
		return proofs[j] + string(signed)
	}
	w, err := New(context.Background(), Config{Dir: filepath.Join(dir, "state"), LogsFile: logsFile, Name: "witness.test/w1",
		PollInterval: time.Hour, GlobalQPS: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	h := w.Handler(false)
	post := func(reqBody string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/add-checkpoint", strings.NewReader(reqBody)))
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	for i := range logs {
		post(request(i, 0))
	}
	bodies := make([]string, b.N)
	for n := range bodies {
		bodies[n] = request(n%nLogs, 1+n/nLogs)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		post(bodies[n])
	}
}
