package witness

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// TestTesseraInterop runs a Tessera v1.0.4 POSIX appender whose policy names
// this witness (fail-closed, so every published checkpoint is cosigned), and
// a second witness that follows the same log by polling its tiles.
func TestTesseraInterop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	skey, vkey, err := checkpoint.GenerateLogKey("interop.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := checkpoint.NewLogSigner(skey)
	logVerifier, _ := checkpoint.NewLogVerifier(vkey)

	tw := newTestWitness(t, "logs/v0\nvkey "+vkey+"\nqpd 86400\n", nil)
	ws := httptest.NewServer(tw.h)
	defer ws.Close()
	wu, _ := url.Parse(ws.URL)
	tw1, err := tessera.NewWitness(tw.w.VKey(), wu)
	if err != nil {
		t.Fatal(err)
	}
	cosigV, err := fnote.NewVerifierForCosignatureV1(tw.w.VKey())
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(64, 10*time.Millisecond).
		WithCheckpointInterval(100*time.Millisecond).
		WithWitnesses(tessera.NewWitnessGroup(1, tw1), &tessera.WitnessOptions{Timeout: 10 * time.Second})
	app, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 20*time.Millisecond)

	// A follower: another witness that polls the log's tiles.
	logSrv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer logSrv.Close()
	follow := filepath.Join(t.TempDir(), "follow")
	os.WriteFile(follow, []byte("# followed\nlog "+vkey+" "+logSrv.URL+"\n"), 0o644)
	follower := newTestWitness(t, "logs/v0\n", func(c *Config) { c.FollowFile = follow; c.Name = "witness.test/follower" })
	followV, _ := fnote.NewVerifierForCosignatureV1(follower.w.VKey())

	var last uint64
	for round := 0; round < 4; round++ {
		var f tessera.IndexFuture
		for i := 0; i < 37*(round+1); i++ {
			f = app.Add(ctx, tessera.NewEntry([]byte(fmt.Sprintf("round %d entry %d", round, i))))
		}
		idx, cp, err := awaiter.Await(ctx, f)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		c, _, err := checkpoint.Open(cp, logVerifier)
		if err != nil {
			t.Fatal(err)
		}
		if c.Size <= idx.Index || c.Size <= last {
			t.Fatalf("round %d: published size %d, index %d, last %d", round, c.Size, idx.Index, last)
		}
		last = c.Size
		if _, err := note.Open(cp, note.VerifierList(cosigV)); err != nil {
			t.Fatalf("round %d: the published checkpoint has no valid cosignature by the witness: %v\n%s", round, err, cp)
		}
		if rec := tw.w.state.lookup(c.Origin); rec == nil || rec.Size < c.Size {
			t.Fatalf("round %d: witness state %+v behind the published size %d", round, rec, c.Size)
		}

		follower.w.PollOnce()
		got := follower.do("GET", "/"+originHash(c.Origin)+"/checkpoint", "")
		if got.code != 200 {
			t.Fatalf("round %d: follower has no checkpoint: %d", round, got.code)
		}
		fc, _, err := checkpoint.Open([]byte(got.body), logVerifier)
		if err != nil {
			t.Fatal(err)
		}
		if fc.Size < c.Size {
			t.Fatalf("round %d: follower at %d, log published %d", round, fc.Size, c.Size)
		}
		if _, err := note.Open([]byte(got.body), note.VerifierList(followV)); err != nil {
			t.Fatalf("round %d: follower's checkpoint not cosigned: %v", round, err)
		}
	}
}
