// Package deploy holds the files an operator deploys next to Tidemark:
// Kubernetes manifests (kubernetes/, checked by kubernetes_test.go),
// Prometheus alerting rules (prometheus/), a Grafana dashboard (grafana/)
// and shippers' examples (examples/). Its tests check the rules with
// promtool and that every metric the rules and the dashboard name is one
// the log, the witness or the auditor exports.
package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tidemark/tidemark/auditor"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
	tlog "github.com/tidemark/tidemark/log"
	"github.com/tidemark/tidemark/witness"
)

const (
	rulesFile     = "prometheus/tidemark-alerts.yml"
	rulesTestFile = "prometheus/tidemark-alerts_test.yml"
	dashboardFile = "grafana/tidemark-dashboard.json"
)

// promtool finds promtool (Debian's prometheus package). Without it the
// test is skipped, or fails when CI=true.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, and promtool is not installed (apt-get install prometheus): %v", err)
		}
		t.Skipf("promtool is not installed (apt-get install prometheus): %v", err)
	}
	return p
}

// TestAlertRules checks the rules' syntax and runs their unit tests.
func TestAlertRules(t *testing.T) {
	p := promtool(t)
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		out, err := exec.Command(p, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// ruleExprs returns the expr of every alert in the rules file. The file is
// ours: expr is either on its line or a block scalar (>-) indented below it.
func ruleExprs(t *testing.T) (alerts int, exprs []string) {
	t.Helper()
	f, err := os.Open(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	var block []string
	blockIndent := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if blockIndent >= 0 {
			if trimmed == "" || indent(line) > blockIndent {
				block = append(block, trimmed)
				continue
			}
			exprs = append(exprs, strings.Join(block, " "))
			block, blockIndent = nil, -1
		}
		if strings.HasPrefix(trimmed, "- alert:") {
			alerts++
		}
		if v, ok := strings.CutPrefix(trimmed, "expr:"); ok {
			v = strings.TrimSpace(v)
			if v == ">-" || v == ">" || v == "|" || v == "|-" {
				blockIndent = indent(line)
				continue
			}
			exprs = append(exprs, v)
		}
	}
	if blockIndent >= 0 {
		exprs = append(exprs, strings.Join(block, " "))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return alerts, exprs
}

// dashboardQueries returns the dashboard's panel queries and the metrics
// its variables' label_values queries name.
func dashboardQueries(t *testing.T) (exprs, varMetrics []string) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_]+\s*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("dashboard variable %s: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("dashboard variable %s: query %q is not label_values(metric, label)", v.Name, q.Query)
		}
		varMetrics = append(varMetrics, m[1])
	}
	return exprs, varMetrics
}

var (
	promqlStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers  = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlOffset    = regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`)
	promqlIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promqlNumber    = regexp.MustCompile(`[0-9.]+(?:e[+-]?[0-9]+)?`)
	promqlKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "inf": true, "nan": true, "atan2": true, "offset": true}
	grafanaVariable = regexp.MustCompile(`\$(?:__)?[a-zA-Z_]+`)
)

// metricNames returns the metric names in a PromQL expression: the
// identifiers left once strings, label matchers, ranges, grouping clauses
// and numbers are removed, that are not followed by "(" (functions and
// aggregations) and are not keywords.
func metricNames(expr string) []string {
	s := grafanaVariable.ReplaceAllString(expr, "")
	s = promqlStrings.ReplaceAllString(s, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRanges.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = promqlOffset.ReplaceAllString(s, " ")
	s = promqlNumber.ReplaceAllString(s, " ")
	var names []string
	for _, m := range promqlIdent.FindAllStringSubmatch(s, -1) {
		if m[1] != "" || promqlKeywords[strings.ToLower(m[0])] {
			continue
		}
		names = append(names, m[0])
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`tidemark_log_checkpoint_age_seconds > 60 or tidemark_log_checkpoint_age_seconds < 0`, []string{"tidemark_log_checkpoint_age_seconds", "tidemark_log_checkpoint_age_seconds"}},
		{`sum by (job, instance) (increase(a_total{outcome!~"cosigned|x"}[5m])) > 0 unless sum by (witness) (rate(b_total{o="c"}[5m])) > 1e6`, []string{"a_total", "b_total"}},
		{`histogram_quantile(0.99, sum by (witness, le) (rate(h_bucket{instance=~"$instance"}[$__rate_interval])))`, []string{"h_bucket"}},
		{`x offset 5m * on (instance) group_left (kind) y`, []string{"x", "y"}},
	} {
		if got := metricNames(c.expr); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("metricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// exported runs a log whose policy has one real witness, the witness and
// an auditor's metrics in this process, logs an event with a receipt so
// that the labelled series exist, and returns their registries.
func exported(t *testing.T) []*prometheus.Registry {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	keys, _, err := tlog.LoadKeys(filepath.Join(dir, "log"), nil, "deploy.tidemark.test/log")
	if err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(dir, "logs")
	if err := os.WriteFile(logs, []byte("logs/v0\nvkey "+keys.VKeys[0]+"\nqpd 1000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	witnessReg := prometheus.NewRegistry()
	w, err := witness.New(context.Background(), witness.Config{Dir: filepath.Join(dir, "w1"), Name: "w1.deploy.test", LogsFile: logs, Logger: quiet, Registry: witnessReg})
	if err != nil {
		t.Fatal(err)
	}
	ws := httptest.NewServer(w.Handler(false))
	t.Cleanup(func() { ws.Close(); w.Close() })
	policy := fmt.Sprintf("log %s\nwitness w1 %s %s\nquorum w1\n", keys.VKeys[0], w.VKey(), ws.URL)
	p, err := checkpoint.ParsePolicy([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	logReg := prometheus.NewRegistry()
	s, err := tlog.New(context.Background(), tlog.Config{
		Dir: filepath.Join(dir, "log"), Keys: keys, Policy: p, PolicyText: []byte(policy),
		CheckpointInterval: 200 * time.Millisecond, Logger: quiet, Registry: logReg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ls := httptest.NewServer(s.Handler(false))
	t.Cleanup(func() { ls.Close(); s.Close(context.Background()) })
	c, err := client.New(ls.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Submit(ctx, map[string]any{"actor": "alice", "action": "deploy.create"}, client.Wait()); err != nil {
		t.Fatalf("submitting an event with a receipt: %v", err)
	}
	auditorReg := prometheus.NewRegistry()
	auditor.NewMetrics(auditorReg)
	return []*prometheus.Registry{logReg, witnessReg, auditorReg}
}

// TestMetricsExported checks that every metric the alerting rules and the
// dashboard name is exported by the log, the witness or the auditor. A
// name is exported when a gathered family has it (a histogram's as
// NAME_bucket, NAME_sum, NAME_count), or, for a vector that has no series
// yet in this run (evidence, storage errors), when the registry refuses
// another collector of that name.
func TestMetricsExported(t *testing.T) {
	alerts, ruleExprs := ruleExprs(t)
	if alerts == 0 || len(ruleExprs) != alerts {
		t.Fatalf("%s: found %d exprs for %d alerts", rulesFile, len(ruleExprs), alerts)
	}
	dashExprs, varMetrics := dashboardQueries(t)
	used := map[string][]string{} // metric: where
	for _, src := range []struct {
		file  string
		exprs []string
	}{{rulesFile, ruleExprs}, {dashboardFile, dashExprs}} {
		for _, e := range src.exprs {
			names := metricNames(e)
			if len(names) == 0 {
				t.Errorf("%s: no metric found in %q", src.file, e)
			}
			for _, n := range names {
				used[n] = append(used[n], src.file)
			}
		}
	}
	for _, n := range varMetrics {
		used[n] = append(used[n], dashboardFile+" (variable)")
	}

	regs := exported(t)
	gathered := map[string]bool{}
	for _, reg := range regs {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			n := mf.GetName()
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				gathered[n+"_bucket"], gathered[n+"_sum"], gathered[n+"_count"] = true, true, true
			case dto.MetricType_SUMMARY:
				gathered[n+"_sum"], gathered[n+"_count"] = true, true
			default:
				gathered[n] = true
			}
		}
	}
	registered := func(name string) bool {
		for _, reg := range regs {
			probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe"})
			if err := reg.Register(probe); err != nil {
				return true
			}
			reg.Unregister(probe)
		}
		return false
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	var probed []string
	for _, n := range names {
		switch {
		case gathered[n]:
		case !strings.HasSuffix(n, "_bucket") && registered(n):
			probed = append(probed, n)
		default:
			t.Errorf("metric %s (used in %s) is not exported by the log, the witness or the auditor", n, strings.Join(dedup(used[n]), ", "))
		}
	}
	t.Logf("%d metrics used; registered without series in this run: %s", len(names), strings.Join(probed, ", "))
}

func dedup(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
