package log

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// rowsHolding returns the tables of the database with a row whose text
// holds secret, reading every column of every row.
func rowsHolding(t *testing.T, db *sql.DB, secret []byte) []string {
	t.Helper()
	rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	var out []string
	for _, table := range tables {
		rs, err := db.Query("SELECT * FROM `" + table + "`")
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		cols, _ := rs.Columns()
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rs.Next() {
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if bytes.Contains(v, secret) {
					out = append(out, table)
				}
			}
		}
		rs.Close()
	}
	return out
}

// On MySQL the payloads are a table of the log's database: an erasure
// through one frontend leaves no row of any table holding the event, the
// other frontend answers it erased, and retention rounds run by both at
// once append one erasure, not two.
func TestEraseAndRetentionOnMySQLFrontends(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "admin"), TokenLine("admin", "tdm_admin_secret")+"\n")
	admins, err := LoadTokens(filepath.Join(dir, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	fe := newMySQLFrontends(t, 2, func(c *Config) {
		c.Leaves, c.AdminTokens, c.Retention = LeavesCommitment, admins, time.Hour
	})
	const secret = "mysql-secret-41d9c0aa"
	for i := range 6 {
		fe[i%2].postEvent(fmt.Sprintf(`{"actor":"alice","n":%d,"note":"%s-%d"}`, i, secret, i))
	}
	target := fe[1].postEvent(`{"actor":"bob","note":"` + secret + `-bob"}`).Index
	for _, tl := range fe {
		tl.waitIndexed()
	}
	db := fe[0].s.backend.db
	if len(rowsHolding(t, db, []byte(secret+"-bob"))) == 0 {
		t.Fatal("no row holds the event before the erasure: the test finds nothing")
	}
	r := fe[0].erase(fmt.Sprintf(`{"index":%d,"reason":"mysql"}`, target), "tdm_admin_secret")
	var ans EraseAnswer
	if r.status != 200 || json.Unmarshal(r.body, &ans) != nil {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	if tables := rowsHolding(t, db, []byte(secret+"-bob")); len(tables) > 0 {
		t.Fatalf("after the erasure, rows of %v hold the event", tables)
	}
	if r := fe[1].erase(fmt.Sprintf(`{"index":%d,"reason":"again"}`, target), "tdm_admin_secret"); r.status != 409 {
		t.Fatalf("erasing again through the other frontend: %d %s", r.status, r.body)
	}
	if l := fe[1].payloadLines(target, target+1); len(l) != 1 || !l[0].Erased {
		t.Fatalf("the other frontend's payloads: %+v", l)
	}

	// Both frontends run a round at once, as if two hours later.
	ctx := context.Background()
	later := time.Now().Add(2 * time.Hour)
	var wg sync.WaitGroup
	for _, tl := range fe {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				more, err := tl.s.retentionRound(ctx, later)
				if err != nil {
					t.Error(err)
				}
				if !more {
					return
				}
			}
		}()
	}
	wg.Wait()
	// A round that found the lock busy did nothing: run them again, one
	// after the other, until the mark reaches the tree.
	for _, tl := range fe {
		if _, err := tl.s.retentionRound(ctx, later); err != nil {
			t.Fatal(err)
		}
	}
	erasures := 0
	size := fe[0].size()
	for i, leaf := range fe[0].leaves() {
		if checkpoint.KindOf(leaf) != checkpoint.KindErasure {
			continue
		}
		e, err := checkpoint.ParseErasureLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		if e.Source == RetentionSource {
			erasures++
			if e.Entries[0].From != 0 || e.Entries[0].To > uint64(i) {
				t.Errorf("retention's erasure at %d covers %+v", i, e.Entries)
			}
		}
	}
	if erasures != 1 {
		t.Fatalf("%d retention erasures in %d entries, want 1", erasures, size)
	}
	if tables := rowsHolding(t, db, []byte(secret)); len(tables) > 0 {
		t.Fatalf("after retention, rows of %v hold erased events", tables)
	}
	if n := fe[0].payloadRows(); n != 0 {
		t.Fatalf("%d payload rows after retention", n)
	}

	// A third frontend started as an event log is refused.
	cfg := fe[0].cfg
	cfg.Dir, cfg.Leaves, cfg.Retention = t.TempDir(), LeavesEvent, 0
	if s, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--leaves commitment") {
		if s != nil {
			s.Close(context.Background())
		}
		t.Fatalf("an event frontend on a commitment log's database: %v", err)
	}
}

// A frontend that dies between an erasure leaf and its deletes leaves the
// erasure to the others: another frontend's repair applies it.
func TestAnotherMySQLFrontendRepairsAnInterruptedErasure(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "admin"), TokenLine("admin", "tdm_admin_secret")+"\n")
	admins, err := LoadTokens(filepath.Join(dir, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	fe := newMySQLFrontends(t, 2, func(c *Config) { c.Leaves, c.AdminTokens = LeavesCommitment, admins })
	const secret = "interrupted-on-mysql-77c1"
	idx := fe[0].postEvent(`{"note":"` + secret + `"}`).Index
	fe[1].postEvent(`{"note":"kept"}`)
	fe[0].s.afterErasureAppend = func() error { return fmt.Errorf("the process dies here") }
	if r := fe[0].erase(fmt.Sprintf(`{"index":%d,"reason":"x"}`, idx), "tdm_admin_secret"); r.status != 500 {
		t.Fatalf("erase dying after the append: %d %s", r.status, r.body)
	}
	db := fe[1].s.backend.db
	if len(rowsHolding(t, db, []byte(secret))) == 0 {
		t.Fatal("the interrupted erasure deleted the payload: the test shows nothing")
	}
	if err := fe[1].s.repairErasures(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	if tables := rowsHolding(t, db, []byte(secret)); len(tables) > 0 {
		t.Fatalf("after the other frontend's repair, rows of %v hold the event", tables)
	}
	if n := fe[1].payloadRows(); n != 1 {
		t.Fatalf("%d payload rows, want the other event's", n)
	}
}

// A group commit of large events, more than MySQL's max_allowed_packet
// (16 MiB on MariaDB) in all, is written: the payload store splits its
// inserts by bytes as well as rows (the driver also sends large values
// apart, so this holds either way).
func TestLargeEventsFitOneMySQLPayloadCommit(t *testing.T) {
	fe := newMySQLFrontends(t, 1, func(c *Config) {
		c.Leaves, c.MaxBody, c.MaxInFlightBytes = LeavesCommitment, 24<<20, 48<<20
	})
	var body bytes.Buffer
	big := strings.Repeat("x", 62<<10)
	const n = 280 // about 17 MiB of event leaves in one group commit
	for i := range n {
		fmt.Fprintf(&body, "{\"i\":%d,\"pad\":%q}\n", i, big)
	}
	r := fe[0].post("/v1/events", "application/x-ndjson", body.Bytes())
	if r.status != 200 {
		t.Fatalf("%d events of 62 KiB: %d %.300s", n, r.status, r.body)
	}
	if got := fe[0].payloadRows(); got != n {
		t.Fatalf("%d payload rows, want %d", got, n)
	}
}
