package witness

import (
	"net/url"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
)

func FuzzParseFollow(f *testing.F) {
	_, k1, _ := checkpoint.GenerateLogKey("example.com/a")
	f.Add([]byte("# logs\nlog " + k1 + " https://log.example.com/a\n"))
	f.Add([]byte("log " + k1 + " http://127.0.0.1:8080\nwitness w x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		logs, err := ParseFollow(b)
		if err != nil {
			return
		}
		for _, l := range logs {
			u, err := url.Parse(l.URL)
			if l.Verifier == nil || l.Origin != l.Verifier.Name() || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Fatalf("accepted %+v from %q", l, b)
			}
		}
	})
}
