package main

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
)

// Target is what a row's figure should reach.
type Target struct {
	Kind  string  // "ratio>=" (Tidemark / baseline), ">=" or "<=" (Tidemark's median)
	Value float64 // the target
	Aim   float64 // a further aim (ratio>= only), or 0
	Unit  string  // of Value, for ">=" and "<="
}

func (t Target) String() string {
	switch t.Kind {
	case "ratio>=":
		s := ">= " + trimFloat(t.Value) + "x"
		if t.Aim > 0 {
			s += ", aim " + trimFloat(t.Aim) + "x"
		}
		return s
	case ">=":
		return ">= " + formatValue(t.Value, t.Unit)
	case "<=":
		return "<= " + formatValue(t.Value, t.Unit)
	}
	return "—"
}

// Spec is one row of the table: a figure of a contender, against a
// baseline's (or alone), and its target.
type Spec struct {
	Path       string // Markdown, the table's first column
	Short      string // the plot panel's title
	Comparison string
	Metric     string
	Contender  string
	Baseline   string // "" when the comparison has no baseline
	Target     *Target
	Required   bool // shown as "not measured" when there is no figure
	Panel      bool // a panel of the throughput plot
}

// Row is a Spec with its figures.
type Row struct {
	Spec
	C, B      Stat    // the contender's and the baseline's
	Ratio     float64 // C.Median / B.Median, or NaN
	PairLo    float64 // the lowest and highest ratio of runs with the same number (ABBA pairs)
	PairHi    float64
	Pairs     int
	Met       bool
	Verdict   string
	Evaluated bool // there is a target and a figure to hold against it
}

var receiptComparison = regexp.MustCompile(`^receipt-([0-9]+)(\+.*)?$`)

// Specs returns the table's rows for these results: the targets
// and the other comparisons of bench/all.sh, in the order of the page.
func Specs(rs *Results) []Spec {
	ratio := func(v, aim float64) *Target { return &Target{Kind: "ratio>=", Value: v, Aim: aim} }
	atLeast := func(v float64, unit string) *Target { return &Target{Kind: ">=", Value: v, Unit: unit} }
	specs := []Spec{
		{Path: "`POST /add` under Tessera's hammer (256 writers, no duplicates), against Tessera's `conformance/posix`: the hammer's N / D",
			Short: "POST /add vs conformance/posix (hammer)", Comparison: "add-vs-conformance", Metric: "entries_per_sec",
			Contender: "tidemark", Baseline: "conformance/posix", Target: ratio(1.0, 1.2), Required: true, Panel: true},
		{Path: "the same runs, steady rate (10% to 90% of the goal)",
			Short: "POST /add vs conformance/posix (steady)", Comparison: "add-vs-conformance", Metric: "steady_per_sec",
			Contender: "tidemark", Baseline: "conformance/posix", Target: ratio(1.0, 1.2), Panel: true},
		{Path: "one event per `POST /v1/events`, against the same bytes through `POST /add`",
			Short: "POST /v1/events vs POST /add", Comparison: "events-vs-add", Metric: "events_per_sec",
			Contender: "events", Baseline: "add", Target: ratio(0.8, 0), Required: true, Panel: true},
		{Path: "NDJSON batches of 1,000 events of 500 B (16 in flight)",
			Short: "NDJSON, 1,000 events per request", Comparison: "ndjson", Metric: "events_per_sec",
			Contender: "tidemark", Target: atLeast(80000, "events/s"), Required: true, Panel: true},
		{Path: "Kubernetes EventLists of 400 events (16 senders)",
			Short: "Kubernetes EventLists of 400", Comparison: "k8s", Metric: "events_per_sec",
			Contender: "tidemark", Target: atLeast(60000, "events/s"), Required: true, Panel: true},
	}
	specs = append(specs, receiptSpecs(rs)...)
	specs = append(specs,
		Spec{Path: "`tidemark audit --full` against `tidemark log` itself (gzip as served), beside Tessera's `fsck` on the same server",
			Short: "audit --full vs fsck (tidemark log)", Comparison: "audit", Metric: "entries_per_sec",
			Contender: "tidemark-audit", Baseline: "fsck", Target: ratio(1.5, 0), Required: true, Panel: true},
		Spec{Path: "`tidemark audit --full` beside `fsck`, static file server (not `tidemark log`)",
			Short: "audit --full vs fsck (static server)", Comparison: "audit-static", Metric: "entries_per_sec",
			Contender: "tidemark-audit", Baseline: "fsck", Panel: true},
		Spec{Path: "witness add-checkpoint, durable, 40,000 logs (64 clients)",
			Short: "witness add-checkpoint, 40,000 logs", Comparison: "witness", Metric: "add_checkpoint_per_sec",
			Contender: "tidemark", Target: atLeast(10000, "requests/s"), Required: true, Panel: true},
		Spec{Path: "NDJSON ingest in commitment mode (`--leaves commitment`), against the default `--leaves event`",
			Short: "NDJSON: commitment vs event leaves", Comparison: "commitment", Metric: "events_per_sec",
			Contender: "commitment", Baseline: "event", Target: ratio(0.8, 0), Required: true, Panel: true},
		Spec{Path: "NDJSON ingest with the search index beside it (`--search=true`), against `--search=false`",
			Short: "NDJSON with search on vs off", Comparison: "search-ingest", Metric: "events_per_sec",
			Contender: "on", Baseline: "off", Required: true, Panel: true},
		Spec{Path: "`POST /add` on one MySQL frontend, against Tessera's `conformance/mysql` (hammer)",
			Short: "MySQL: 1 frontend vs conformance/mysql", Comparison: "mysql", Metric: "entries_per_sec",
			Contender: "tidemark-1", Baseline: "conformance/mysql", Target: ratio(1.0, 0), Required: true, Panel: true},
		Spec{Path: "`POST /add` on two MySQL frontends, against `conformance/mysql`", Comparison: "mysql", Metric: "entries_per_sec",
			Contender: "tidemark-2", Baseline: "conformance/mysql"},
		Spec{Path: "`POST /add` on three MySQL frontends, against `conformance/mysql`", Comparison: "mysql", Metric: "entries_per_sec",
			Contender: "tidemark-3", Baseline: "conformance/mysql"},
		Spec{Path: "NDJSON on one MySQL frontend, against its own `POST /add` rate", Comparison: "mysql", Metric: "events_per_sec",
			Contender: "ndjson-1", Baseline: "tidemark-1", Target: ratio(10, 0)},
		Spec{Path: "NDJSON on three MySQL frontends, against their `POST /add` rate", Comparison: "mysql", Metric: "events_per_sec",
			Contender: "ndjson-3", Baseline: "tidemark-3", Target: ratio(10, 0)},
		Spec{Path: "writes on MySQL with a 2-of-3 witness quorum answering, against no witnesses", Comparison: "mysql-witness", Metric: "entries_per_sec",
			Contender: "quorum", Baseline: "none"},
		Spec{Path: "writes on MySQL with the witness quorum hung (SIGSTOP), against no witnesses", Comparison: "mysql-witness", Metric: "entries_per_sec",
			Contender: "stopped", Baseline: "none"},
		Spec{Path: "writes on MySQL with the witnesses refusing connections, against no witnesses", Comparison: "mysql-witness", Metric: "entries_per_sec",
			Contender: "killed", Baseline: "none"},
	)
	return specs
}

func atMost(v float64, unit string) *Target { return &Target{Kind: "<=", Value: v, Unit: unit} }

// A receiptKey names a receipt comparison: its rate, and "" on plain
// loopback or the latency added to each witness request ("+100ms").
type receiptKey struct {
	rate  int
	extra string
}

// compare orders receipt comparisons: plain loopback first, then by rate.
func (a receiptKey) compare(b receiptKey) int {
	if a.extra != b.extra {
		if a.extra == "" {
			return -1
		}
		if b.extra == "" {
			return 1
		}
	}
	return a.rate - b.rate
}

// receiptSpecs: p50 and p99 rows for each rate measured, and for 50/s and
// 1,000/s (the targets' rates) whether measured or not.
func receiptSpecs(rs *Results) []Spec {
	keys := []receiptKey{{50, ""}, {1000, ""}}
	for _, name := range rs.comparisonNames() {
		m := receiptComparison.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		rate, _ := strconv.Atoi(m[1])
		if k := (receiptKey{rate, m[2]}); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.SortStableFunc(keys, receiptKey.compare)
	var specs []Spec
	for _, k := range keys {
		comparison := fmt.Sprintf("receipt-%d%s", k.rate, k.extra)
		where := "3 witnesses on loopback (2 of 3)"
		required := k.extra == "" && (k.rate == 50 || k.rate == 1000)
		var p50, p99 *Target
		if k.extra == "" {
			p50, p99 = atMost(0.5, "s"), atMost(1.0, "s")
		} else {
			where = "3 witnesses, each request held " + k.extra[1:]
		}
		rate := formatInt(float64(k.rate))
		specs = append(specs,
			Spec{Path: fmt.Sprintf("POST to witnessed receipt, single events at %s/s, %s: p50", rate, where),
				Comparison: comparison, Metric: "p50_s", Contender: "tidemark", Target: p50, Required: required},
			Spec{Path: "the same, p99",
				Comparison: comparison, Metric: "p99_s", Contender: "tidemark", Target: p99, Required: required},
		)
	}
	return specs
}

// Rows evaluates the specs against the results; rows that are not required
// and have no figure are left out.
func Rows(rs *Results) []Row {
	var rows []Row
	for _, s := range Specs(rs) {
		r := Row{Spec: s, Ratio: math.NaN()}
		r.C = rs.Stat(s.Comparison, s.Contender, s.Metric)
		if s.Baseline != "" {
			r.B = rs.Stat(s.Comparison, s.Baseline, s.Metric)
			// NDJSON on MySQL is held against the /add rate: another metric.
			if !r.B.Has() && s.Comparison == "mysql" {
				r.B = rs.Stat(s.Comparison, s.Baseline, "entries_per_sec")
			}
		}
		if !r.C.Has() && !s.Required {
			continue
		}
		if r.C.Has() && r.B.Has() && r.B.Median != 0 {
			r.Ratio = r.C.Median / r.B.Median
			for run, c := range r.C.Runs {
				b, ok := r.B.Runs[run]
				if !ok || b == 0 || r.C.Of > 0 || r.B.Of > 0 {
					continue
				}
				q := c / b
				if r.Pairs == 0 || q < r.PairLo {
					r.PairLo = q
				}
				if r.Pairs == 0 || q > r.PairHi {
					r.PairHi = q
				}
				r.Pairs++
			}
		}
		r.Verdict = verdict(&r)
		rows = append(rows, r)
	}
	return rows
}

func verdict(r *Row) string {
	if !r.C.Has() {
		if r.C.Failed > 0 {
			return "**not measured** (every run failed)"
		}
		return "**not measured**"
	}
	t := r.Target
	if t == nil {
		return "—"
	}
	// The figure as the table shows it: a ratio shown as 1.000x meets 1.0x.
	var fig float64
	switch t.Kind {
	case "ratio>=":
		if math.IsNaN(r.Ratio) {
			return "**not measured** (no baseline)"
		}
		fig = shown(r.Ratio, "ratio")
		r.Met = fig >= t.Value
	case ">=":
		fig = shown(r.C.Median, r.C.Unit)
		r.Met = fig >= t.Value
	case "<=":
		fig = shown(r.C.Median, r.C.Unit)
		r.Met = fig <= t.Value
	}
	r.Evaluated = true
	if !r.Met {
		return "**not met**"
	}
	if t.Aim > 0 {
		if fig >= t.Aim {
			return "met, and the " + trimFloat(t.Aim) + "x aim"
		}
		return "met (not the " + trimFloat(t.Aim) + "x aim)"
	}
	return "met"
}

// shown: v rounded as the table shows it (ratios and seconds to 3 decimals,
// milliseconds and percentages to 1, others to a whole number).
func shown(v float64, unit string) float64 {
	digits := 0.0
	switch unit {
	case "ratio", "s":
		digits = 3
	case "ms":
		digits = 1
	case "fraction":
		digits = 3 // 1 decimal of a percentage
	}
	p := math.Pow(10, digits)
	return math.Round(v*p) / p
}

// formatValue: a figure with its unit, rates as whole numbers with
// thousands separators, seconds to the millisecond.
func formatValue(v float64, unit string) string {
	switch unit {
	case "s":
		return strconv.FormatFloat(v, 'f', 3, 64) + " s"
	case "ms":
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	case "fraction":
		return strconv.FormatFloat(100*v, 'f', 1, 64) + " %"
	case "":
		return formatInt(v)
	}
	return formatInt(v) + " " + unit
}

// formatNumber is formatValue without the unit.
func formatNumber(v float64, unit string) string {
	switch unit {
	case "s":
		return strconv.FormatFloat(v, 'f', 3, 64)
	case "ms":
		return strconv.FormatFloat(v, 'f', 1, 64)
	case "fraction":
		return strconv.FormatFloat(100*v, 'f', 1, 64)
	}
	return formatInt(v)
}

// formatInt: v rounded, with thousands separators.
func formatInt(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func trimFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !containsDot(s) {
		s += ".0"
	}
	return s
}

func containsDot(s string) bool {
	for i := range len(s) {
		if s[i] == '.' {
			return true
		}
	}
	return false
}
