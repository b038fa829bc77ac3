package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
	tlog "github.com/tidemark/tidemark/log"
	"github.com/tidemark/tidemark/witness"
)

// Example submits an event to a log witnessed by two of three witnesses,
// and checks the receipt offline with the policy.
func Example() {
	logURL, policyText, stop := startWitnessedLog()
	defer stop()

	c, err := client.New(logURL, nil)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.Submit(ctx, map[string]any{
		"actor": "alice", "action": "secret.read", "resource": "prod/db/users", "outcome": "success",
	}, client.Wait())
	if err != nil {
		panic(err)
	}
	fmt.Println("logged at index", res.Index)

	// Later, anywhere, with nothing but the policy:
	policy, err := checkpoint.ParsePolicy(policyText)
	if err != nil {
		panic(err)
	}
	v, err := client.Verify(policy, res.Receipt)
	if err != nil {
		panic(err)
	}
	fmt.Printf("verified: %s, cosigned by %d witnesses\n", v.Leaf.Event, len(v.Cosigners))

	// A receipt changed in any byte is refused.
	res.Receipt.Leaf[len(res.Receipt.Leaf)-2] ^= 1
	_, err = client.Verify(policy, res.Receipt)
	fmt.Println(err != nil)

	// Output:
	// logged at index 0
	// verified: {"action":"secret.read","actor":"alice","outcome":"success","resource":"prod/db/users"}, cosigned by 2 witnesses
	// true
}

// ExampleClient_Receipt fetches the receipt of an entry logged earlier.
func ExampleClient_Receipt() {
	logURL, policyText, stop := startWitnessedLog()
	defer stop()
	c, _ := client.New(logURL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.Submit(ctx, []byte(`{"action":"deploy.create","resource":"prod/api"}`))
	if err != nil {
		panic(err)
	}
	// Receipt retries until a witnessed checkpoint covers the entry.
	r, err := c.Receipt(ctx, res.Index)
	if err != nil {
		panic(err)
	}
	policy, _ := checkpoint.ParsePolicy(policyText)
	v, err := client.Verify(policy, r)
	if err != nil {
		panic(err)
	}
	fmt.Println(v.Index, string(v.Leaf.Event))
	// Output:
	// 0 {"action":"deploy.create","resource":"prod/api"}
}

// startWitnessedLog runs, in this process, three witnesses and a log whose
// policy needs two of them, and returns the log's URL and the policy.
func startWitnessedLog() (logURL string, policy []byte, stop func()) {
	dir, err := os.MkdirTemp("", "tidemark-client-example")
	if err != nil {
		panic(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	keys, _, err := tlog.LoadKeys(filepath.Join(dir, "log"), nil, "example.tidemark.dev/log")
	if err != nil {
		panic(err)
	}
	logs := filepath.Join(dir, "logs")
	os.WriteFile(logs, []byte("logs/v0\nvkey "+keys.VKeys[0]+"\nqpd 1000000\n"), 0o644)
	var stops []func()
	var b strings.Builder
	b.WriteString("log " + keys.VKeys[0] + "\n")
	for i := 1; i <= 3; i++ {
		w, err := witness.New(context.Background(), witness.Config{
			Dir: filepath.Join(dir, fmt.Sprintf("w%d", i)), Name: fmt.Sprintf("w%d.example.dev", i),
			LogsFile: logs, Logger: quiet,
		})
		if err != nil {
			panic(err)
		}
		hs := httptest.NewServer(w.Handler(false))
		stops = append(stops, func() { hs.Close(); w.Close() })
		fmt.Fprintf(&b, "witness w%d %s %s\n", i, w.VKey(), hs.URL)
	}
	b.WriteString("group g 2 w1 w2 w3\nquorum g\n")
	p, err := checkpoint.ParsePolicy([]byte(b.String()))
	if err != nil {
		panic(err)
	}
	s, err := tlog.New(context.Background(), tlog.Config{
		Dir: filepath.Join(dir, "log"), Keys: keys, Policy: p, PolicyText: []byte(b.String()),
		CheckpointInterval: 200 * time.Millisecond, Logger: quiet,
	})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(s.Handler(false))
	return hs.URL, []byte(b.String()), func() {
		hs.Close()
		s.Close(context.Background())
		for _, f := range stops {
			f()
		}
		os.RemoveAll(dir)
	}
}
