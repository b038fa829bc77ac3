// Command searchload measures GET /v1/search on a running `tidemark log`
// from a separate process: selective queries of several kinds, each kind's
// latency quantiles, at one or more concurrencies.
//
// The log is expected to hold events from `loadgen --actors N --actions A
// --resources R` (actor.name user-<n>, zero-padded). The queries are made
// from the log itself: first --samples searches by random actors collect
// real events, and the query kinds take their values from them, so every
// kind but "actor" finds at least one event:
//
//	actor         actor=user-<n>, n uniform over [0, --actors)
//	actor+action  actor=X&action=Y of a sampled event
//	resource*     resource=<a sampled resource minus its last character>*
//	              (prod/db/shard-01* matches shard-010..019: 10 of 1,000 names)
//	word          q=<first group of a sampled details.request_id> (a word of
//	              one corpus event: about N/4096 hits)
//	window-W      since/until a window of W centred on a sampled event's
//	              received time (one kind per --windows entry)
//	id            q=<a sampled event's id> (ev-RUN-IDX-SEQ: four words, "ev"
//	              in every event)
//	action        action=Y alone (about 2 % of the log: not selective)
//
// Each query asks for --limit results. Latency is from sending the request
// to the last byte of the answer; only 200 answers count, others are
// errors. With --db the same queries are also run straight against the
// SQLite index (search.Store.Find, no HTTP, no leaf read-back) and their
// plans printed (EXPLAIN QUERY PLAN), so the SQL's share of the time shows:
// give it the log's <data>/.tidemark/search.db while the log is idle (its
// index caught up; SQLite's WAL lets another process read beside it).
// With --analyze as well, it then runs ANALYZE on the index and the SQL-only
// and HTTP queries again: what the planner does with statistics.
//
// The last lines are machine-readable, one per concurrency and kind:
//
//	RESULT kind=actor conc=1 n=2000 errors=0 p50_ms=... p90_ms=... p99_ms=... max_ms=... hits_p50=... full=...
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/search"
)

type config struct {
	url       string
	actors    int
	queries   int
	mix       int
	samples   int
	limit     int
	conc      []int
	kinds     []string
	windows   []time.Duration
	seed      uint64
	tokenFile string
	db        string
	analyze   bool
	timeout   time.Duration
}

func main() {
	var c config
	var conc, kinds, windows string
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "log base URL")
	flag.IntVar(&c.actors, "actors", 10000, "loadgen's --actors: actors are user-<n> for n in [0, actors)")
	flag.IntVar(&c.queries, "queries", 2000, "queries of kind actor per concurrency")
	flag.IntVar(&c.mix, "mix", 500, "queries of each other kind per concurrency")
	flag.IntVar(&c.samples, "samples", 200, "searches by random actors whose events give the other kinds' values")
	flag.IntVar(&c.limit, "limit", 50, "limit of every query")
	flag.StringVar(&conc, "concurrency", "1,4", "comma-separated concurrencies, run in this order")
	flag.StringVar(&kinds, "kinds", "actor,actor+action,resource*,word,window", "comma-separated query kinds: actor, actor+action, resource*, word, window (one kind per --windows entry), id, action")
	flag.StringVar(&windows, "windows", "1m,1s", "comma-separated since/until window widths for kind window")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the query choices")
	flag.StringVar(&c.tokenFile, "token-file", "", "file holding a read token (optional)")
	flag.StringVar(&c.db, "db", "", "also run the queries straight against this SQLite index (the log's search.db, the log idle) and print their plans")
	flag.BoolVar(&c.analyze, "analyze", false, "with --db: then run ANALYZE on it (PRAGMA analysis_limit=1000), and the SQL-only queries, their plans and the HTTP queries again, to show what the planner does with statistics (this writes sqlite_stat1 into the index)")
	flag.DurationVar(&c.timeout, "timeout", 60*time.Second, "HTTP timeout per query")
	flag.Parse()
	for _, s := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("--concurrency: %q is not a positive number", s)
		}
		c.conc = append(c.conc, n)
	}
	for _, s := range strings.Split(windows, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d <= 0 {
			fatalf("--windows: %q is not a positive duration", s)
		}
		c.windows = append(c.windows, d)
	}
	c.kinds = strings.Split(kinds, ",")
	if err := run(c); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(f string, args ...any) {
	fmt.Fprintf(os.Stderr, "searchload: "+f+"\n", args...)
	os.Exit(1)
}

// answer is the part of a /v1/search answer this program reads.
type answer struct {
	Results []struct {
		Index    uint64 `json:"index"`
		Received string `json:"received"`
		Event    struct {
			ID    string `json:"id"`
			Actor struct {
				Name string `json:"name"`
			} `json:"actor"`
			Action   string `json:"action"`
			Resource string `json:"resource"`
			Details  struct {
				RequestID string `json:"request_id"`
			} `json:"details"`
		} `json:"event"`
	} `json:"results"`
	Next       string `json:"next"`
	CompleteTo uint64 `json:"complete_to"`
}

type client struct {
	http  *http.Client
	base  string
	token string
}

// get runs one search; it returns the answer, the latency to its last byte
// and an error for anything but a 200 with a JSON answer.
func (c *client) get(ctx context.Context, params url.Values) (answer, time.Duration, error) {
	var a answer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/search?"+params.Encode(), nil)
	if err != nil {
		return a, 0, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	t0 := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return a, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	lat := time.Since(t0)
	if err != nil {
		return a, lat, err
	}
	if resp.StatusCode != http.StatusOK {
		return a, lat, fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return a, lat, fmt.Errorf("bad answer: %v", err)
	}
	return a, lat, nil
}

// query is one search to run.
type query struct {
	kind   string
	params url.Values
}

// sample is what the query kinds take from one sampled event.
type sample struct {
	actor, action, resource, word, id string
	received                          time.Time
}

func actorName(n, total int) string {
	w := len(strconv.Itoa(max(total-1, 0)))
	return fmt.Sprintf("user-%0*d", w, n)
}

func run(c config) error {
	var token string
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	maxConc := slices.Max(c.conc)
	cl := &client{
		http: &http.Client{Timeout: c.timeout, Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        2 * maxConc,
			MaxIdleConnsPerHost: 2 * maxConc,
			DisableCompression:  true,
		}},
		base:  strings.TrimRight(c.url, "/"),
		token: token,
	}
	ctx := context.Background()
	r := rand.New(rand.NewPCG(c.seed, c.seed^0x5eed))

	// Samples: real events, for the kinds that need values that occur.
	var samples []sample
	var completeTo uint64
	t0 := time.Now()
	for range c.samples {
		a, _, err := cl.get(ctx, url.Values{"actor": {actorName(r.IntN(c.actors), c.actors)}, "limit": {"5"}})
		if err != nil {
			return fmt.Errorf("sampling: %w", err)
		}
		completeTo = a.CompleteTo
		for _, res := range a.Results {
			t, err := time.Parse(time.RFC3339Nano, res.Received)
			if err != nil {
				return fmt.Errorf("sampling: received %q: %v", res.Received, err)
			}
			word, _, _ := strings.Cut(res.Event.Details.RequestID, "-")
			samples = append(samples, sample{
				actor: res.Event.Actor.Name, action: res.Event.Action, resource: res.Event.Resource,
				word: word, id: res.Event.ID, received: t,
			})
		}
	}
	if len(samples) == 0 {
		return fmt.Errorf("sampling: %d searches by random actors found nothing (complete_to %d): does the log hold loadgen --actors %d events, and is its index built?", c.samples, completeTo, c.actors)
	}
	fmt.Printf("searchload: url=%s complete_to=%d samples=%d events from %d searches in %.1f s; limit=%d actors=%d queries=%d (actor) mix=%d (other kinds) concurrency=%v kinds=%v windows=%v\n",
		cl.base, completeTo, len(samples), c.samples, time.Since(t0).Seconds(), c.limit, c.actors, c.queries, c.mix, c.conc, c.kinds, c.windows)

	lim := strconv.Itoa(c.limit)
	makeQuery := func(kind string) query {
		s := samples[r.IntN(len(samples))]
		v := url.Values{"limit": {lim}}
		switch {
		case kind == "actor":
			v.Set("actor", actorName(r.IntN(c.actors), c.actors))
		case kind == "actor+action":
			v.Set("actor", s.actor)
			v.Set("action", s.action)
		case kind == "resource*":
			v.Set("resource", s.resource[:max(len(s.resource)-1, 1)]+"*")
		case kind == "word":
			v.Set("q", s.word)
		case kind == "id":
			v.Set("q", s.id)
		case kind == "action":
			v.Set("action", s.action)
		case strings.HasPrefix(kind, "window-"):
			w, _ := time.ParseDuration(strings.TrimPrefix(kind, "window-"))
			v.Set("since", s.received.Add(-w/2).UTC().Format(time.RFC3339Nano))
			v.Set("until", s.received.Add(w/2).UTC().Format(time.RFC3339Nano))
		default:
			fatalf("unknown kind %q", kind)
		}
		return query{kind, v}
	}
	var kinds []string
	for _, k := range c.kinds {
		k = strings.TrimSpace(k)
		if k == "window" {
			for _, w := range c.windows {
				kinds = append(kinds, "window-"+w.String())
			}
			continue
		}
		kinds = append(kinds, k)
	}

	// mixQueries is one shuffled list of all kinds' queries, so that the
	// kinds share the machine's ups and downs.
	mixQueries := func() []query {
		var qs []query
		for _, k := range kinds {
			n := c.mix
			if k == "actor" {
				n = c.queries
			}
			for range n {
				qs = append(qs, makeQuery(k))
			}
		}
		r.Shuffle(len(qs), func(i, j int) { qs[i], qs[j] = qs[j], qs[i] })
		return qs
	}
	var results []string
	for _, conc := range c.conc {
		qs := mixQueries()
		results = append(results, runHTTP(ctx, cl, qs, conc, kinds, "http")...)
	}
	if c.db != "" {
		var qs []query
		for _, k := range kinds {
			for range min(c.mix, 200) {
				qs = append(qs, makeQuery(k))
			}
		}
		lines, err := runDB(ctx, c.db, qs, kinds, "sql")
		if err != nil {
			return err
		}
		results = append(results, lines...)
		if c.analyze {
			if err := analyze(ctx, c.db); err != nil {
				return err
			}
			lines, err := runDB(ctx, c.db, qs, kinds, "sql-analyzed")
			if err != nil {
				return err
			}
			results = append(results, lines...)
			// The log's own connections see the statistics too (ANALYZE
			// changes the schema cookie, so they read the schema again).
			for _, conc := range c.conc {
				results = append(results, runHTTP(ctx, cl, mixQueries(), conc, kinds, "http-analyzed")...)
			}
		}
	}
	fmt.Println()
	for _, l := range results {
		fmt.Println(l)
	}
	return nil
}

type outcome struct {
	lat  time.Duration
	hits int
	full bool // a next page exists
	err  error
}

// runHTTP runs qs with conc workers and prints each kind's figures; it
// returns the RESULT lines.
func runHTTP(ctx context.Context, cl *client, qs []query, conc int, kinds []string, via string) []string {
	out := make([]outcome, len(qs))
	next := make(chan int)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				a, lat, err := cl.get(ctx, qs[i].params)
				out[i] = outcome{lat: lat, hits: len(a.Results), full: a.Next != "", err: err}
			}
		}()
	}
	for i := range qs {
		next <- i
	}
	close(next)
	wg.Wait()
	secs := time.Since(t0).Seconds()
	fmt.Printf("\n== %s, concurrency %d: %d queries in %.1f s (%.0f queries/s)\n", via, conc, len(qs), secs, float64(len(qs))/secs)
	return report(via, conc, qs, out, kinds)
}

// runDB runs qs one at a time straight against the index (search.Store.Find,
// as the log's handler calls it) and prints each kind's plan.
func runDB(ctx context.Context, path string, qs []query, kinds []string, via string) ([]string, error) {
	st, err := search.OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	out := make([]outcome, len(qs))
	for i, q := range qs {
		sq, err := search.ParseQuery(q.params)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", q.params.Encode(), err)
		}
		t0 := time.Now()
		idx, more, err := st.Find(ctx, sq, sq.Limit)
		out[i] = outcome{lat: time.Since(t0), hits: len(idx), full: more, err: err}
	}
	fmt.Printf("\n== %s: SQLite only (search.Store.Find on %s, concurrency 1, no HTTP, no leaf read-back)\n", via, path)
	lines := report(via, 1, qs, out, kinds)
	if err := explain(ctx, path, qs, kinds); err != nil {
		return nil, err
	}
	return lines, nil
}

func report(via string, conc int, qs []query, out []outcome, kinds []string) []string {
	var lines []string
	fmt.Printf("%-14s %6s %6s %9s %9s %9s %9s %8s %6s\n", "kind", "n", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "hits p50", "full")
	for _, k := range kinds {
		var lat []time.Duration
		var hits []int
		nerr, full := 0, 0
		var lastErr error
		for i, q := range qs {
			if q.kind != k {
				continue
			}
			if out[i].err != nil {
				nerr++
				lastErr = out[i].err
				continue
			}
			lat = append(lat, out[i].lat)
			hits = append(hits, out[i].hits)
			if out[i].full {
				full++
			}
		}
		slices.Sort(lat)
		slices.Sort(hits)
		hp50 := 0
		if len(hits) > 0 {
			hp50 = hits[len(hits)/2]
		}
		fmt.Printf("%-14s %6d %6d %9.2f %9.2f %9.2f %9.2f %8d %6d\n", k, len(lat)+nerr, nerr,
			ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99)), ms(pct(lat, 100)), hp50, full)
		if lastErr != nil {
			fmt.Printf("    last error: %v\n", lastErr)
		}
		lines = append(lines, fmt.Sprintf("RESULT via=%s kind=%s conc=%d n=%d errors=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f hits_p50=%d full=%d",
			via, k, conc, len(lat)+nerr, nerr, ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99)), ms(pct(lat, 100)), hp50, full))
	}
	return lines
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
