package checkpoint

import (
	"testing"
	"time"
)

// A realistic 500-byte audit event.
var benchEvent = []byte(`{"id":"9f0c2d7e-5b1a-4c3e-9a8f-2d6b7e1c0a44","time":"2026-11-25T22:31:01.504Z","actor":{"id":"u-1842","name":"alice@example.com","ip":"10.20.30.40"},"action":"secret.read","resource":"prod/db/users","outcome":"success","details":{"request_id":"req-7f3a9c1e2b","user_agent":"kubectl/v1.31.2 (linux/amd64)","namespace":"payments","git_sha":"4e1d2c3b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d","cluster":"eu-west-1-prod","reason":"rotation check","ticket":"OPS-4821","labels":["pci","tier-1"]}}`)

func BenchmarkAppendEventLeaf(b *testing.B) {
	now := time.Now()
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, _, _, err = AppendEventLeaf(buf[:0], benchEvent, now, "deploy-bot", ""); err != nil {
			b.Fatal(err)
		}
	}
}
