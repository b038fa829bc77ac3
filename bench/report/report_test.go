package main

import (
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	pageBefore = "# Performance\n\nHand-written prose before the figures.\n\n"
	pageAfter  = "\n## The commands\n\nHand-written prose after the figures.\n"
	readmeText = "# Project\n\n## Performance\n\nIntro.\n\n" + beginLine + "\nold table\n" + endMarker + "\n\n## Documentation\n\nMore.\n"
)

// setUp makes a repository-like directory: README.md and docs/performance.md
// with their generated parts, for run to write into.
func setUp(t *testing.T) (root, page, images, readme string) {
	t.Helper()
	root = t.TempDir()
	page = filepath.Join(root, "docs", "performance.md")
	images = filepath.Join(root, "docs", "performance")
	readme = filepath.Join(root, "README.md")
	if err := os.MkdirAll(filepath.Dir(page), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, []byte(pageBefore+beginLine+"\nold figures\n"+endMarker+"\n"+pageAfter), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readme, []byte(readmeText), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, page, images, readme
}

// tableRow returns the table line of text whose path starts with prefix.
func tableRow(t *testing.T, text, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "| "+prefix) {
			return l
		}
	}
	t.Fatalf("no table row starting %q in:\n%s", prefix, text)
	return ""
}

func TestReportFromFixture(t *testing.T) {
	_, page, images, readme := setUp(t)
	latest := filepath.Join(images, "latest.json")
	if err := run("testdata/run", page, images, readme, latest); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)

	// The prose around the markers survives; the old generated part does not.
	if !strings.HasPrefix(text, pageBefore+beginLine+"\n") || !strings.HasSuffix(text, endMarker+"\n"+pageAfter) {
		t.Errorf("the hand-written prose around the generated part changed:\n%s", text)
	}
	if strings.Contains(text, "old figures") {
		t.Error("the old generated part is still there")
	}

	for _, c := range []struct{ row, want string }{
		// 8,500 against 10,000 entries/s: 0.85x, below 1.0x.
		{"`POST /add` under Tessera's hammer", "| 8,500 entries/s (8,000–9,000, 3 runs) | conformance/posix: 10,000 entries/s (9,500–11,000, 3 runs) | 0.850x (0.80–0.89) | >= 1.0x, aim 1.2x | **not met** |"},
		{"NDJSON batches", "| 85,000 events/s (82,000–90,000, 3 runs) | — | — | >= 80,000 events/s | met |"},
		{"witness add-checkpoint", "| 4,500 requests/s (4,000–5,000, 3 runs) | — | — | >= 10,000 requests/s | **not met** |"},
		{"Kubernetes EventLists", "| not measured | — | — | >= 60,000 events/s | **not measured** |"},
		{"`tidemark audit --full` against `tidemark log`", "| 1.613x (1.60–1.62) | >= 1.5x | met |"},
		// A failed run is counted, and left out of the median.
		{"one event per", "| 7,250 events/s (7,000–7,500, 2 runs, 1 failed) |"},
		{"POST to witnessed receipt, single events at 50/s", "| 0.300 s (0.285–0.315, 3 runs) | — | — | <= 0.500 s | met |"},
		{"POST to witnessed receipt, single events at 1,000/s", "| 0.600 s (0.570–0.630, 3 runs) | — | — | <= 0.500 s | **not met** |"},
		{"`POST /add` on one MySQL frontend", "conformance/mysql: 4,500 entries/s"},
		{"NDJSON on three MySQL frontends", "| 14,000 events/s (13,500–14,500, 3 runs) | tidemark-3: 2,900 entries/s"},
		// Not in the fixture and not required: no row.
	} {
		if row := tableRow(t, text, c.row); !strings.Contains(row, c.want) {
			t.Errorf("row %q:\n got %s\nwant it to contain %s", c.row, row, c.want)
		}
	}
	if strings.Contains(text, "quorum hung") {
		t.Error("a row for a comparison that was not run and is not required")
	}
	for _, want := range []string{
		"Environment: 2026-12-01T10:00:00Z to 2026-12-01T11:30:00Z; 2 cores; memory 23 GiB; kernel 6.18.44; go1.26.8; Tessera v1.0.4; commit 0123456789ab (v0.12.0-3-g0123456); load average 0.10 0.20 0.30 at the start, 1.50 1.20 0.90 at the end.",
		"| k8s | `bench/k8s.sh` | 3s | 1.90 1.50 0.90; 1.80 1.50 0.90 | 1 |",
		"![Throughput of each path against its baseline: medians, whiskers from the slowest to the fastest run](performance/throughput.png)",
		"(performance/receipt-latency.png)", "(performance/frontends.png)",
		"[latest.json](performance/latest.json)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(text, "Smoke run") {
		t.Error("a measured run labelled as a smoke run")
	}

	// The plots are PNGs a reader's browser can show.
	for _, name := range []string{ThroughputPNG, ReceiptPNG, FrontendsPNG} {
		f, err := os.Open(filepath.Join(images, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := img.Bounds(); r.Dx() < 400 || r.Dy() < 300 {
			t.Errorf("%s: %v, too small", name, r)
		}
	}

	// The README's part: the table and links to the plots and the page, all resolving.
	b, err = os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	rtext := string(b)
	if !strings.HasPrefix(rtext, "# Project\n\n## Performance\n\nIntro.\n\n") || !strings.HasSuffix(rtext, endMarker+"\n\n## Documentation\n\nMore.\n") ||
		strings.Contains(rtext, "old table") {
		t.Errorf("README's prose changed, or its old table stayed:\n%s", rtext)
	}
	if row := tableRow(t, rtext, "`POST /add` under Tessera's hammer"); !strings.Contains(row, "| 8,500 entries/s (3 runs) |") || !strings.Contains(row, "**not met**") {
		t.Errorf("README row: %s", row)
	}
	links := regexp.MustCompile(`\]\(([^)]+)\)`).FindAllStringSubmatch(rtext, -1)
	if len(links) != 4 {
		t.Errorf("README links %v, want the three plots and the page", links)
	}
	for _, l := range links {
		if _, err := os.Stat(filepath.Join(filepath.Dir(readme), l[1])); err != nil {
			t.Errorf("README link %s: %v", l[1], err)
		}
	}

	// latest.json holds everything, extra members included, and makes the same page.
	rs, err := Load(latest)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := Load("testdata/run")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Results) != len(orig.Results) || len(rs.Comparisons) != 2 || rs.Env.Commit != orig.Env.Commit {
		t.Errorf("latest.json: %d results, %d comparisons, commit %q", len(rs.Results), len(rs.Comparisons), rs.Env.Commit)
	}
	lb, _ := os.ReadFile(latest)
	if !strings.Contains(string(lb), `"fsck_n":32`) {
		t.Error("latest.json lost a member the report does not read")
	}
	if err := run(latest, page, images, readme, ""); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(page)
	if string(again) != text {
		t.Errorf("the page from latest.json differs from the page from the results directory")
	}
}

func TestReportLabelsSmokeAndHandRuns(t *testing.T) {
	rs, err := Load("testdata/run")
	if err != nil {
		t.Fatal(err)
	}
	rs.Env.Quick = true
	if got := PageBlock(rs, Rows(rs), Images{}, "performance", ""); !strings.Contains(got, "**Smoke run (`QUICK=1`)**") {
		t.Errorf("a QUICK=1 run is not labelled a smoke run:\n%s", got)
	}
	rs.Env.Quick = false
	rs.Env.Source = "docs/performance.md of 2026-11-25"
	if got := ReadmeBlock(rs, Rows(rs), Images{}, "docs/performance", "docs/performance.md"); !strings.Contains(got, "converted by hand") {
		t.Errorf("figures converted by hand are not labelled so:\n%s", got)
	}
}

func TestSplice(t *testing.T) {
	got, err := Splice("a\n"+beginLine+"\nx\n"+endMarker+"\nb\n", "y\n", false)
	if err != nil || got != "a\n"+beginLine+"\ny\n"+endMarker+"\nb\n" {
		t.Errorf("Splice = %q, %v", got, err)
	}
	if _, err := Splice("a\n"+beginLine+"\nx\n", "y\n", true); err == nil {
		t.Error("Splice with only the begin marker did not fail")
	}
	if _, err := Splice("a\n", "y\n", false); err == nil {
		t.Error("Splice without markers did not fail where it may not append")
	}
	if got, err := Splice("a\n", "y\n", true); err != nil || got != "a\n\n"+beginLine+"\ny\n"+endMarker+"\n" {
		t.Errorf("Splice appending = %q, %v", got, err)
	}
}

func TestMedianAndFormat(t *testing.T) {
	if m := median([]float64{1, 2, 3, 10}); m != 2.5 {
		t.Errorf("median of an even count = %v", m)
	}
	if m := median([]float64{1, 2, 10}); m != 2 {
		t.Errorf("median of an odd count = %v", m)
	}
	// A ratio shown as 1.000x meets 1.0x; one shown as 0.999x does not.
	for c, want := range map[[2]float64]bool{{9996, 10000}: true, {9994, 10000}: false} {
		r := Row{Spec: Spec{Target: &Target{Kind: "ratio>=", Value: 1}}, C: Stat{N: 1}, Ratio: c[0] / c[1]}
		if verdict(&r); r.Met != want {
			t.Errorf("ratio %v: met %v, want %v", r.Ratio, r.Met, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.6: "1,234,568", -61300: "-61,300"} {
		if got := formatInt(v); got != want {
			t.Errorf("formatInt(%v) = %q, want %q", v, got, want)
		}
	}
}
