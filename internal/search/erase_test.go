package search

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// EraseRows takes a row's words out of the file itself (the full-text
// index's secure-delete), leaves the other rows found, and erasing a row
// again, or one never indexed, does not damage the index.
func TestEraseRowsRemovesTheWordsFromTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "search.db")
	ctx := context.Background()
	st, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows := testRows()
	rows[3].Text = "word3 common unique7f3a9cword"
	if ok, err := st.Commit(ctx, 0, 10, rows); err != nil || !ok {
		t.Fatalf("Commit: %v %v", ok, err)
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fileHolds := func(word string) bool {
		t.Helper()
		for _, f := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(f)
			if err == nil && bytes.Contains(b, []byte(word)) {
				return true
			}
		}
		return false
	}
	if !fileHolds("unique7f3a9cword") {
		t.Fatal("the word is not in the file before the erasure: the test shows nothing")
	}
	if err := st.EraseRows(ctx, []Row{rows[3], {Index: 42, Fields: Fields{Text: "never indexed"}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if fileHolds("unique7f3a9cword") {
		t.Fatal("after EraseRows and Flush the erased row's word is still in the file")
	}
	if got := find(t, st, "q=common&limit=100"); slices.Contains(got, 3) || len(got) != 9 {
		t.Fatalf("q=common after erasing 3: %v", got)
	}
	if got := find(t, st, "actor=a3"); !slices.Equal(got, []uint64{8}) {
		t.Fatalf("actor=a3 after erasing 3: %v, want [8]", got)
	}
	// Again: nothing to do, and the index stays whole.
	if err := st.EraseRows(ctx, []Row{rows[3]}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.Exec(`INSERT INTO search_text (search_text, rank) VALUES ('integrity-check', 0)`); err != nil {
		t.Fatalf("the full-text index is damaged: %v", err)
	}
	if got := find(t, st, "q=word5"); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("q=word5: %v", got)
	}
	// A range: the rows left go (their words cannot be found without their
	// text, and stay, matching nothing that the log confirms).
	if n, err := st.Erase(ctx, 0, 2); err != nil || n != 2 {
		t.Fatalf("Erase(0, 2): %d %v", n, err)
	}
	if got := find(t, st, "source=ci&limit=100"); len(got) != 7 {
		t.Fatalf("rows after erasing 0, 1 and 3: %v", got)
	}
}
