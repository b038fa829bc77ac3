package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/search"
	_ "modernc.org/sqlite"
)

// explain prints SQLite's plan of one query of each kind. The statement is
// rebuilt here the way search.Store.Find builds it (SQLite flavour, as of
// 8aed18e): keep the two in step.
func explain(ctx context.Context, path string, qs []query, kinds []string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Println("\n== SQLite plans (EXPLAIN QUERY PLAN of the statement search.Store.Find runs)")
	var stat int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'`).Scan(&stat); err == nil {
		fmt.Printf("sqlite_stat1 (ANALYZE statistics): %v\n", map[bool]string{true: "present", false: "absent: the planner guesses every index's selectivity"}[stat > 0])
	}
	for _, k := range kinds {
		for _, q := range qs {
			if q.kind != k {
				continue
			}
			sq, err := search.ParseQuery(q.params)
			if err != nil {
				return err
			}
			stmt, args := findSQL(sq, sq.Limit)
			rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+stmt, args...)
			if err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
			fmt.Printf("%s (%s):\n  %s\n", k, q.params.Encode(), stmt)
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					rows.Close()
					return err
				}
				fmt.Printf("    %s\n", detail)
			}
			rows.Close()
			break
		}
	}
	return nil
}

// analyze runs ANALYZE on the index, as `PRAGMA optimize` would.
func analyze(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=analysis_limit(1000)")
	if err != nil {
		return err
	}
	defer db.Close()
	t0 := time.Now()
	if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("ANALYZE: %w", err)
	}
	fmt.Printf("\n== ANALYZE (PRAGMA analysis_limit=1000) took %.2f s\n", time.Since(t0).Seconds())
	return nil
}

// findSQL is search.Store.Find's SQLite statement for q.
func findSQL(q search.Query, limit int) (string, []any) {
	var where []string
	var args []any
	for _, f := range []struct {
		name string
		m    search.Match
	}{{"actor", q.Actor}, {"action", q.Action}, {"resource", q.Resource}, {"source", q.Source}, {"outcome", q.Outcome}} {
		if f.m.Value == "" && !f.m.Prefix {
			continue
		}
		v := search.Cut(f.m.Value)
		switch {
		case !f.m.Prefix:
			where = append(where, "e."+f.name+" = ?")
			args = append(args, v)
		case v == "":
			where = append(where, "e."+f.name+" <> ''")
		default:
			where = append(where, "e."+f.name+" >= ?", "e."+f.name+" < ?")
			b := []byte(v)
			b[len(b)-1]++
			args = append(args, v, string(b))
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "e.received >= ?")
		args = append(args, q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		where = append(where, "e.received < ?")
		args = append(args, q.Until.UnixNano())
	}
	from := "search_entries e"
	if len(q.Terms) > 0 {
		from += " JOIN search_text t ON t.rowid = e.idx"
		where = append(where, "search_text MATCH ?")
		var b strings.Builder
		for i, t := range q.Terms {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(`"` + strings.ReplaceAll(strings.TrimSuffix(t, "*"), `"`, `""`) + `"`)
			if strings.HasSuffix(t, "*") {
				b.WriteByte('*')
			}
		}
		args = append(args, b.String())
	}
	stmt := "SELECT e.idx FROM " + from
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	stmt += " ORDER BY e.idx DESC LIMIT ?"
	return stmt, append(args, limit+1)
}
