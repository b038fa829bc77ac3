package search

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

// testRows are ten events: actors a0..a4 twice each, a resource under
// prod/ for even indexes, and a word of their own.
func testRows() []Row {
	var rows []Row
	for i := range 10 {
		res := "dev/app"
		if i%2 == 0 {
			res = fmt.Sprintf("prod/db/%d", i)
		}
		rows = append(rows, Row{
			Index: uint64(i), Received: t0.Add(time.Duration(i) * time.Minute), Source: "ci",
			Fields: Fields{Actor: fmt.Sprintf("a%d", i%5), Action: "secret.read", Resource: res, Outcome: "success",
				Text: fmt.Sprintf("word%d common", i)},
		})
	}
	return rows
}

func openTestStore(t *testing.T) *Store {
	t.Helper()
	st, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "search.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func find(t *testing.T, st *Store, params string) []uint64 {
	t.Helper()
	v, err := url.ParseQuery(params)
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParseQuery(v)
	if err != nil {
		t.Fatalf("ParseQuery(%s): %v", params, err)
	}
	got, _, err := st.Find(context.Background(), q, q.Limit)
	if err != nil {
		t.Fatalf("Find(%s): %v", params, err)
	}
	return got
}

func TestFindFilters(t *testing.T) {
	st := openTestStore(t)
	ctx := context.Background()
	if ok, err := st.Commit(ctx, 0, 10, testRows()); !ok || err != nil {
		t.Fatalf("Commit: %v %v", ok, err)
	}
	for _, c := range []struct {
		params string
		want   []uint64
	}{
		{"actor=a1", []uint64{6, 1}},
		{"actor=a", nil},
		{"actor=a*", []uint64{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
		{"resource=prod/*&actor=a2", []uint64{2}},
		{"resource=prod/db/1*", nil},
		{"resource=*", []uint64{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
		{"since=2026-11-24T09:03:00Z&until=2026-11-24T09:05:00Z", []uint64{4, 3}},
		{"q=word7", []uint64{7}},
		{"q=common&actor=a3", []uint64{8, 3}},
		{"q=wor*&limit=2", []uint64{9, 8}},
		{"q=common&cursor=3", []uint64{2, 1, 0}},
		{"source=ci&outcome=success&action=secret.read&limit=1", []uint64{9}},
		// Nothing in q is FTS5 syntax.
		{`q="word1" OR word2`, nil},
		{"q=NEAR(word1 word2)", nil},
		{"q=word1 OR", nil},
	} {
		if got := find(t, st, c.params); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.params, got, c.want)
		}
	}
}

// Commit moves the progress by compare-and-swap: a second indexer (or one
// racing a reset) that read an older progress writes nothing.
func TestCommitIsACompareAndSwap(t *testing.T) {
	st := openTestStore(t)
	ctx := context.Background()
	rows := testRows()
	if ok, err := st.Commit(ctx, 0, 5, rows[:5]); !ok || err != nil {
		t.Fatalf("first commit: %v %v", ok, err)
	}
	if ok, err := st.Commit(ctx, 0, 10, rows); ok || err != nil {
		t.Fatalf("a commit from a stale progress: ok=%v err=%v", ok, err)
	}
	if got := find(t, st, "actor=a*"); !slices.Equal(got, []uint64{4, 3, 2, 1, 0}) {
		t.Fatalf("the stale commit wrote rows: %v", got)
	}
	if n, _ := st.CompleteTo(ctx); n != 5 {
		t.Fatalf("complete_to %d, want 5", n)
	}
	if err := st.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.CompleteTo(ctx); n != 0 {
		t.Fatalf("complete_to after Reset: %d", n)
	}
	if got := find(t, st, "q=common"); len(got) != 0 {
		t.Fatalf("rows after Reset: %v", got)
	}
	if ok, err := st.Commit(ctx, 5, 10, rows[5:]); ok || err != nil {
		t.Fatalf("a commit from before the reset: ok=%v err=%v", ok, err)
	}
	if ok, err := st.Commit(ctx, 0, 10, rows); !ok || err != nil {
		t.Fatalf("rebuild: %v %v", ok, err)
	}
}

func TestLongValuesAreCutAndStillFound(t *testing.T) {
	st := openTestStore(t)
	long := strings.Repeat("x", MaxValue+50)
	rows := []Row{{Index: 0, Received: t0, Source: "s", Fields: Fields{Actor: long + "1"}}, {Index: 1, Received: t0, Source: "s", Fields: Fields{Actor: long + "2"}}}
	if ok, err := st.Commit(context.Background(), 0, 2, rows); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// Both are candidates; the log tells them apart with Matches.
	got := find(t, st, "actor="+long+"2")
	if !slices.Equal(got, []uint64{1, 0}) {
		t.Fatalf("got %v", got)
	}
	q, _ := ParseQuery(url.Values{"actor": {long + "2"}})
	if q.Matches(t0, "s", rows[0].Fields) || !q.Matches(t0, "s", rows[1].Fields) {
		t.Fatal("Matches does not compare whole values")
	}
}

func TestParseQueryRefusesWhatItCannotAnswer(t *testing.T) {
	for _, bad := range []string{
		"actor=a&actor=b", "who=a", "since=yesterday", "until=2026-13-01T00:00:00Z",
		"since=2026-11-24T10:00:00Z&until=2026-11-24T09:00:00Z", "limit=0", "limit=501", "limit=x",
		"cursor=-1", "cursor=abc", "q=" + strings.Repeat("a ", 17), "actor=" + strings.Repeat("a", 1025),
	} {
		v, _ := url.ParseQuery(bad)
		if _, err := ParseQuery(v); err == nil {
			t.Errorf("ParseQuery(%.60s) accepted", bad)
		}
	}
	q, err := ParseQuery(url.Values{"q": {"prod/db-users wor*"}, "actor": {"a*b"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q.Terms, []string{"prod", "db", "users", "wor*"}) {
		t.Errorf("terms %q", q.Terms)
	}
	if q.Actor.Prefix || q.Actor.Value != "a*b" {
		t.Errorf("a '*' inside a value is literal: %+v", q.Actor)
	}
}

// Without statistics SQLite answers actor and action from the action's
// index, thousands of rows, instead of the actor's few (bench/search.sh
// measured 131 ms at p99 over 1M entries); Analyze fixes the plan.
func TestAnalyzeMakesTheSelectiveIndexWin(t *testing.T) {
	st := openTestStore(t)
	ctx := context.Background()
	var rows []Row
	for i := range 20_000 {
		rows = append(rows, Row{Index: uint64(i), Received: t0, Source: "s",
			Fields: Fields{Actor: fmt.Sprintf("user-%d", i%2000), Action: fmt.Sprintf("act-%d", i%2)}})
	}
	if ok, err := st.Commit(ctx, 0, uint64(len(rows)), rows); !ok || err != nil {
		t.Fatal(ok, err)
	}
	plan := func() string {
		q, err := ParseQuery(url.Values{"actor": {"user-7"}, "action": {"act-1"}})
		if err != nil {
			t.Fatal(err)
		}
		stmt, args := st.findSQL(q, q.Limit)
		rs, err := st.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+stmt, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var b strings.Builder
		for rs.Next() {
			var id, parent, notused int
			var detail string
			if err := rs.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			b.WriteString(detail + "; ")
		}
		return b.String()
	}
	if err := st.Analyze(ctx); err != nil {
		t.Fatal(err)
	}
	if p := plan(); !strings.Contains(p, "search_by_actor") {
		t.Fatalf("after Analyze the plan is %q, want the actor's index", p)
	}
	if got := find(t, st, "actor=user-7&action=act-1"); !slices.Equal(got, []uint64{18007, 16007, 14007, 12007, 10007, 8007, 6007, 4007, 2007, 7}) {
		t.Fatalf("got %v", got)
	}
}
