package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
	tlog "github.com/tidemark/tidemark/log"
)

// startSearchLog runs a real log in this process, with read tokens when
// readToken is not "", and returns its URL.
func startSearchLog(t *testing.T, readToken string) string {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	keys, _, err := tlog.LoadKeys(filepath.Join(dir, "log"), nil, "search.test/log")
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlog.Config{Dir: filepath.Join(dir, "log"), Keys: keys, CheckpointInterval: 100 * time.Millisecond, Logger: quiet}
	if readToken != "" {
		path := filepath.Join(dir, "read-tokens")
		if err := os.WriteFile(path, []byte(tlog.TokenLine("reader", readToken)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg.ReadTokens, err = tlog.LoadTokens(path); err != nil {
			t.Fatal(err)
		}
	}
	s, err := tlog.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler(false))
	t.Cleanup(func() {
		hs.Close()
		s.Close(context.Background())
	})
	return hs.URL
}

// postAndIndex posts events and waits until the search index covers them.
func postAndIndex(t *testing.T, c *client.Client, events []any) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.SubmitBatch(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	for _, r := range res {
		idx = append(idx, r.Index)
	}
	want := slices.Max(idx) + 1
	for {
		p, err := c.Search(ctx, client.SearchQuery{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if p.CompleteTo >= want {
			return idx
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the search index is complete to %d, not %d, after 30 s", p.CompleteTo, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var searchEvents = []any{
	map[string]any{"actor": "alice", "action": "secret.read", "resource": "prod/db/users", "outcome": "success", "note": "quarterly rotation"},
	map[string]any{"actor": "bob", "action": "secret.read", "resource": "prod/db/orders", "outcome": "denied"},
	map[string]any{"actor": "alice", "action": "deploy.create", "resource": "staging/api", "outcome": "success", "note": "hotfix <urgent> & risky"},
	map[string]any{"actor": "carol", "action": "secret.write", "resource": "prod/kv/tls", "outcome": "failure"},
	map[string]any{"actor": "alice", "action": "secret.read", "resource": "prod/kv/tls", "outcome": "success"},
}

func hitIndexes(p *client.SearchPage) []uint64 {
	var out []uint64
	for _, h := range p.Results {
		out = append(out, h.Index)
	}
	return out
}

func TestSearch(t *testing.T) {
	c, err := client.New(startSearchLog(t, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	idx := postAndIndex(t, c, searchEvents)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		q    client.SearchQuery
		want []uint64 // newest first
	}{
		{"actor", client.SearchQuery{Actor: "alice"}, []uint64{idx[4], idx[2], idx[0]}},
		{"actor and action", client.SearchQuery{Actor: "alice", Action: "secret.read"}, []uint64{idx[4], idx[0]}},
		{"resource prefix", client.SearchQuery{Resource: "prod/db/*"}, []uint64{idx[1], idx[0]}},
		{"outcome", client.SearchQuery{Outcome: "denied"}, []uint64{idx[1]}},
		{"words", client.SearchQuery{Q: "quarterly"}, []uint64{idx[0]}},
		{"word prefix", client.SearchQuery{Q: "rot*"}, []uint64{idx[0]}},
		{"words and a field", client.SearchQuery{Q: "tls", Actor: "carol"}, []uint64{idx[3]}},
		{"no such actor", client.SearchQuery{Actor: "mallory"}, nil},
		{"until before everything", client.SearchQuery{Until: time.Now().Add(-time.Hour)}, nil},
		{"since an hour ago", client.SearchQuery{Since: time.Now().Add(-time.Hour), Actor: "bob"}, []uint64{idx[1]}},
	} {
		p, err := c.Search(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := hitIndexes(p); !slices.Equal(got, tc.want) {
			t.Errorf("%s: hits %v, want %v", tc.name, got, tc.want)
		}
		if p.Next != "" {
			t.Errorf("%s: a next page (%q) after every hit", tc.name, p.Next)
		}
	}

	// The hit is the event as sent, with the log's stamps.
	p, err := c.Search(ctx, client.SearchQuery{Outcome: "denied"})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Results[0]
	if h.Source != "anonymous" || time.Since(h.Received) > time.Minute || string(h.Event) != `{"action":"secret.read","actor":"bob","outcome":"denied","resource":"prod/db/orders"}` {
		t.Errorf("hit = %+v, event %s", h, h.Event)
	}

	// A bad query is refused with the log's message, not retried.
	_, err = c.Search(ctx, client.SearchQuery{Limit: 100000})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Message == "" {
		t.Errorf("limit 100000: %v, want a 400 saying why", err)
	}
}

func TestSearchPagesThroughEveryHit(t *testing.T) {
	c, _ := client.New(startSearchLog(t, ""), nil)
	var events []any
	for i := range 7 {
		events = append(events, map[string]any{"actor": "pager", "action": "page.turn", "n": i})
	}
	events = append(events, map[string]any{"actor": "someone-else", "action": "page.turn"})
	idx := postAndIndex(t, c, events)
	want := slices.Clone(idx[:7])
	slices.Reverse(want)

	ctx := context.Background()
	var got []uint64
	pages := 0
	for p, err := range c.SearchPages(ctx, client.SearchQuery{Actor: "pager", Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.Results) > 1 {
			t.Fatalf("page %d has %d hits with limit 1", pages, len(p.Results))
		}
		got = append(got, hitIndexes(p)...)
		if pages > 20 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged hits %v, want %v", got, want)
	}

	// By hand, with Next as the cursor: the same pages.
	q := client.SearchQuery{Actor: "pager", Limit: 3}
	var byHand []uint64
	for {
		p, err := c.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		byHand = append(byHand, hitIndexes(p)...)
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if !slices.Equal(byHand, want) {
		t.Fatalf("hits by hand %v, want %v", byHand, want)
	}
}

func TestSearchReadTokens(t *testing.T) {
	const token = "tdm_search-test-reader-token"
	url := startSearchLog(t, token)
	ctx := context.Background()

	anon, _ := client.New(url, nil)
	_, err := anon.Search(ctx, client.SearchQuery{Actor: "alice"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 401 {
		t.Fatalf("search without a read token: %v, want 401", err)
	}
	wrong, _ := client.New(url, &client.Options{ReadToken: "tdm_not-this-one"})
	if _, err := wrong.Search(ctx, client.SearchQuery{Actor: "alice"}); !errors.As(err, &ce) || ce.Status != 403 {
		t.Fatalf("search with an unknown read token: %v, want 403", err)
	}

	// Writes are open (no --tokens); reads carry the read token.
	c, _ := client.New(url, &client.Options{ReadToken: token})
	idx := postAndIndex(t, c, searchEvents[:2])
	p, err := c.Search(ctx, client.SearchQuery{Actor: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if got := hitIndexes(p); !slices.Equal(got, []uint64{idx[1]}) {
		t.Fatalf("hits %v, want [%d]", got, idx[1])
	}
}

// CheckHit accepts the receipt of the hit's own entry and refuses one of
// another entry, or a hit changed in any field.
func TestCheckHit(t *testing.T) {
	c, _ := client.New(startSearchLog(t, ""), &client.Options{MinBackoff: 50 * time.Millisecond})
	postAndIndex(t, c, searchEvents)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.Search(ctx, client.SearchQuery{Actor: "alice"})
	if err != nil || len(p.Results) != 3 {
		t.Fatalf("search: %v, %d hits", err, len(p.Results))
	}
	receipts := map[uint64]*checkpoint.Receipt{}
	for _, h := range p.Results {
		r, err := c.Receipt(ctx, h.Index)
		if err != nil {
			t.Fatal(err)
		}
		receipts[h.Index] = r
		// The event with "<" and "&", which the log's JSON escapes.
		if err := client.CheckHit(h, r); err != nil {
			t.Errorf("hit %d: %v", h.Index, err)
		}
	}
	h := p.Results[0]
	other := receipts[p.Results[1].Index]
	changed := map[string]client.SearchHit{}
	hh := h
	hh.Source = "someone"
	changed["source"] = hh
	hh = h
	hh.Received = h.Received.Add(time.Nanosecond)
	changed["received"] = hh
	hh = h
	hh.Event = []byte(`{"actor":"alice","action":"secret.read","resource":"prod/kv/tls","outcome":"failure"}`)
	changed["event"] = hh
	for what, hit := range changed {
		if err := client.CheckHit(hit, receipts[h.Index]); !errors.Is(err, client.ErrNotTheHit) {
			t.Errorf("a hit with another %s passed: %v", what, err)
		}
	}
	if err := client.CheckHit(h, other); !errors.Is(err, client.ErrNotTheHit) {
		t.Errorf("the receipt of entry %d passed for entry %d: %v", other.Index, h.Index, err)
	}
	moved := *other
	moved.Index = h.Index
	if err := client.CheckHit(h, &moved); !errors.Is(err, client.ErrNotTheHit) {
		t.Errorf("another entry's leaf under the hit's index passed: %v", err)
	}
}
