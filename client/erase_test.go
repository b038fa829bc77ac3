package client_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
	tlog "github.com/tidemark/tidemark/log"
)

// startCommitmentLog runs a commitment log in this process, with an admin
// token and, when readToken is not "", read tokens.
func startCommitmentLog(t *testing.T, admin, readToken string) string {
	t.Helper()
	dir := t.TempDir()
	keys, _, err := tlog.LoadKeys(filepath.Join(dir, "log"), nil, "erase.test/log")
	if err != nil {
		t.Fatal(err)
	}
	tokens := func(name, tok string) *tlog.Tokens {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(tlog.TokenLine(name, tok)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tt, err := tlog.LoadTokens(path)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	cfg := tlog.Config{Dir: filepath.Join(dir, "log"), Keys: keys, CheckpointInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), Leaves: tlog.LeavesCommitment, AdminTokens: tokens("admin", admin)}
	if readToken != "" {
		cfg.ReadTokens = tokens("reader", readToken)
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

// Submit with Wait on a commitment log gets a receipt with the opening
// (made from the salt when the log gives openings to readers only), so
// the receipt proves the event after the log erased it; Erase needs an
// admin token.
func TestSubmitAndEraseOnACommitmentLog(t *testing.T) {
	for _, readToken := range []string{"", "tdm_reader"} {
		url := startCommitmentLog(t, "tdm_admin", readToken)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		writer, err := client.New(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := writer.Submit(ctx, []byte(`{"actor":"alice","action":"login"}`), client.Wait())
		if err != nil {
			t.Fatalf("Submit (read token %q): %v", readToken, err)
		}
		if len(res.Salt) != checkpoint.SaltSize || res.Receipt.Opening == nil || !bytes.Contains(res.Receipt.Opening.Leaf, []byte("alice")) {
			t.Fatalf("the result of a commitment log: %+v", res)
		}
		policy, err := writer.Policy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p, err := checkpoint.ParsePolicy(policy)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Verify(p, res.Receipt); err != nil {
			t.Fatalf("the receipt does not verify: %v", err)
		}
		// A search hit is proven by the entry's receipt, opened for a
		// reader.
		reader, err := client.New(url, &client.Options{ReadToken: readToken})
		if err != nil {
			t.Fatal(err)
		}
		postAndIndex(t, reader, []any{map[string]string{"actor": "bob"}})
		page, err := reader.Search(ctx, client.SearchQuery{Actor: "alice"})
		if err != nil || len(page.Results) != 1 {
			t.Fatalf("Search actor=alice: %+v %v", page, err)
		}
		rc, err := reader.Receipt(ctx, page.Results[0].Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.CheckHit(page.Results[0], rc); err != nil {
			t.Fatalf("CheckHit on a commitment log: %v", err)
		}
		var ce *client.Error
		if _, err := writer.Erase(ctx, res.Index, "x"); !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
			t.Fatalf("Erase without an admin token: %v", err)
		}
		admin, err := client.New(url, &client.Options{Token: "tdm_admin"})
		if err != nil {
			t.Fatal(err)
		}
		e, err := admin.Erase(ctx, res.Index, "a test")
		if err != nil || e.Index != res.Index || e.ErasureIndex != res.Index+2 {
			t.Fatalf("Erase: %+v %v", e, err)
		}
		if _, err := admin.Erase(ctx, res.Index, "again"); !errors.As(err, &ce) || ce.Status != http.StatusConflict {
			t.Fatalf("Erase again: %v", err)
		}
		if _, err := client.Verify(p, res.Receipt); err != nil {
			t.Fatalf("after the erasure the receipt does not verify: %v", err)
		}
		if page, err := reader.Search(ctx, client.SearchQuery{Actor: "alice"}); err != nil || len(page.Results) != 0 {
			t.Fatalf("Search finds the erased event: %+v %v", page, err)
		}
	}
}
