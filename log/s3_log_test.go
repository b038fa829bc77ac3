package log

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testmysql"
	"github.com/tidemark/tidemark/internal/tests3"
	"github.com/transparency-dev/tessera/api"
)

// Logs on S3 and MySQL (Tessera's AWS driver) against a real S3-compatible
// server (versitygw, with Object Lock) and MariaDB: two frontends share the
// bucket and the database, and the idempotency index in it.
func TestS3FrontendsShareTheTreeAndTheKeys(t *testing.T) {
	_, s3cfg := s3ForTest(t, tests3.Options{ObjectLock: true, Versioning: true}, time.Hour)
	dsn := testmysql.New(t)
	keys, _, err := LoadKeys(t.TempDir(), nil, "test.example/s3")
	if err != nil {
		t.Fatal(err)
	}
	var fe []*testLog
	for range 2 {
		dir := t.TempDir()
		cfg := Config{Dir: dir, MySQL: dsn, S3: &s3cfg, Keys: keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: time.Second, RepublishInterval: time.Second}
		tl := &testLog{t: t, dir: dir, cfg: cfg}
		tl.start()
		t.Cleanup(func() {
			if tl.s != nil {
				tl.close()
			}
		})
		fe = append(fe, tl)
	}
	// The same keyed batch to both frontends at once: one set of entries.
	var nd bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&nd, "{\"id\":\"s3-%d\",\"action\":\"secret.read\"}\n", i)
	}
	var wg sync.WaitGroup
	answers := make([]struct{ Results []eventResult }, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := fe[i].post("/v1/events", "application/x-ndjson", nd.Bytes())
			if r.status != http.StatusOK || json.Unmarshal(r.body, &answers[i]) != nil || len(answers[i].Results) != 300 {
				t.Errorf("frontend %d: %d %s", i, r.status, r.body)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[uint64]bool{}
	for j := range 300 {
		a, b := answers[0].Results[j], answers[1].Results[j]
		if a.Index != b.Index {
			t.Fatalf("event %d: index %d on one frontend, %d on the other", j, a.Index, b.Index)
		}
		if seen[a.Index] {
			t.Fatalf("index %d answered for two events", a.Index)
		}
		seen[a.Index] = true
	}
	// Sequenced entries are integrated by either frontend; the published
	// checkpoint covers them, and the tiles are served from the bucket.
	waitForCheckpoint(t, fe[1], 300)
	if r := fe[0].get("/checkpoint"); r.status != 200 || !bytes.Contains(r.body, []byte("\n300\n")) {
		t.Errorf("/checkpoint: %d %s", r.status, r.body)
	}
	r := fe[1].get("/tile/entries/001.p/44")
	var b api.EntryBundle
	if r.status != 200 || b.UnmarshalText(r.body) != nil || len(b.Entries) != 44 {
		t.Errorf("/tile/entries/001.p/44: %d, %d entries", r.status, len(b.Entries))
	}
	if r := fe[0].get("/tile/0/000"); r.status != 200 || len(r.body) != 256*32 {
		t.Errorf("/tile/0/000: %d, %d bytes", r.status, len(r.body))
	}
	// A retry after a restart of one frontend is still answered.
	fe[0].close()
	fe[0].start()
	if got := fe[0].postEvent(`{"id":"s3-7","action":"secret.read"}`); !got.Duplicate || got.Index != answers[0].Results[7].Index {
		t.Errorf("retry after a restart: %+v, want index %d", got, answers[0].Results[7].Index)
	}
}
