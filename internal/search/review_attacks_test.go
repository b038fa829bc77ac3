package search

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// A bound outside the years time.UnixNano can hold (1678 to 2262) is still
// a bound: "until=9999-12-31T23:59:59Z", the usual way to say "no upper
// bound", must find every event, as Query.Matches says it does, and
// "since=1000-01-01T00:00:00Z" likewise. UnixNano of such a time wraps
// around, and the SQL filter then found nothing (or everything).
func TestTimeBoundsBeyondUnixNanoFindEveryEvent(t *testing.T) {
	st := openTestStore(t)
	ctx := context.Background()
	if ok, err := st.Commit(ctx, 0, 10, testRows()); !ok || err != nil {
		t.Fatalf("Commit: %v %v", ok, err)
	}
	all := []uint64{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}
	for _, params := range []string{
		"until=9999-12-31T23:59:59Z",
		"until=2300-01-01T00:00:00Z",
		"since=1000-01-01T00:00:00Z",
		"since=1600-01-01T00:00:00Z&until=3000-01-01T00:00:00Z",
		"since=0001-01-01T00:00:00.000000001Z",
	} {
		got := find(t, st, params)
		if !slices.Equal(got, all) {
			t.Errorf("%s: %v, want every event %v", params, got, all)
		}
		// The post-filter agrees that every row matches: the index missed
		// them, not the query.
		q := parse(t, params)
		for _, r := range testRows() {
			if !q.Matches(r.Received, r.Source, r.Fields) {
				t.Fatalf("%s: Matches refuses row %d", params, r.Index)
			}
		}
	}
	// And a bound beyond the range on the other side finds nothing.
	for _, params := range []string{"since=2300-01-01T00:00:00Z", "until=1600-01-01T00:00:00Z"} {
		if got := find(t, st, params); len(got) != 0 {
			t.Errorf("%s: %v, want none", params, got)
		}
	}
}

// The words of q are split as the full-text index splits the events
// (FTS5 unicode61: letters, every kind of number, and private-use
// characters are parts of a word). A query splitting "x²" into "x" (² is
// a number, not a decimal digit) missed the event holding "x²".
func TestQueryWordsAreSplitAsTheIndexSplitsText(t *testing.T) {
	st := openTestStore(t)
	ctx := context.Background()
	rows := []Row{
		{Index: 0, Received: t0, Source: "ci", Fields: Fields{Text: "area x² of plot"}},
		{Index: 1, Received: t0, Source: "ci", Fields: Fields{Text: "chapter Ⅻ closed"}},
		{Index: 2, Received: t0, Source: "ci", Fields: Fields{Text: "ticket ½done"}},
	}
	if ok, err := st.Commit(ctx, 0, 3, rows); !ok || err != nil {
		t.Fatalf("Commit: %v %v", ok, err)
	}
	for _, c := range []struct {
		params string
		want   []uint64
	}{
		{"q=x²", []uint64{0}},
		{"q=Ⅻ", []uint64{1}},
		{"q=½done", []uint64{2}},
	} {
		if got := find(t, st, c.params); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.params, got, c.want)
		}
	}
}

func parse(t *testing.T, params string) Query {
	t.Helper()
	v, err := url.ParseQuery(params)
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParseQuery(v)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// q made only of separators is not "no q": it is refused, instead of
// answering with every event of the log.
func TestQueryWithoutWordsIsRefused(t *testing.T) {
	for _, q := range []string{"!!!", "—", "*", "@ #"} {
		if _, err := ParseQuery(url.Values{"q": {q}}); err == nil {
			t.Errorf("q=%q: accepted, and would match every event", q)
		}
	}
}

// A prefix that ends inside a character, just below MaxValue, passes
// Query.Matches against the full value but is above the value the index
// keeps (cut before that character): the hit was missed. Values that are
// not UTF-8 can never name a field (events are UTF-8), so they are refused.
func TestQueryValuesMustBeUTF8(t *testing.T) {
	long := strings.Repeat("a", MaxValue-1) + "é-and-more"
	prefix := long[:MaxValue] // ends after the first byte of 'é'
	st := openTestStore(t)
	row := Row{Index: 0, Received: t0, Source: "ci", Fields: Fields{Actor: long}}
	if ok, err := st.Commit(context.Background(), 0, 1, []Row{row}); !ok || err != nil {
		t.Fatalf("Commit: %v %v", ok, err)
	}
	q, err := ParseQuery(url.Values{"actor": {prefix + "*"}})
	if err != nil {
		return // refused: no silent miss
	}
	if !q.Matches(row.Received, row.Source, row.Fields) {
		t.Fatal("Matches refuses the row: the test is wrong")
	}
	got, _, err := st.Find(context.Background(), q, q.Limit)
	if err != nil || len(got) != 1 {
		t.Fatalf("actor=%q*: %v %v: a prefix that Matches accepts, missed by the index", prefix, got, err)
	}
}
