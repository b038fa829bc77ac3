package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Format names the shape of a results file (latest.json).
const Format = "tidemark-bench/1"

// Record is one figure of one run, as bench/lib.sh's record (and
// bench/receipt --results) writes it: one line of JSON per run and figure.
// Members the report does not know are kept when it writes latest.json.
type Record struct {
	Script     string   `json:"script"`
	Comparison string   `json:"comparison"`
	Contender  string   `json:"contender"`
	Metric     string   `json:"metric"`
	Unit       string   `json:"unit"`
	Value      *float64 `json:"value"` // nil: the run failed
	Run        int      `json:"run"`   // 1, 2, ...; 0 when the order of the runs was not kept
	Loadavg    *float64 `json:"loadavg,omitempty"`
	Time       string   `json:"time,omitempty"`
	// Of > 0: Value is the median of Of runs whose values were not kept
	// (figures converted by hand from an earlier page).
	Of int `json:"of,omitempty"`
	// Quantiles of a latency distribution: [percent, value] pairs.
	Quantiles [][2]float64 `json:"quantiles,omitempty"`
	// Date and Commit of a figure that comes from another run than the
	// file's environment (figures converted by hand).
	Date   string `json:"date,omitempty"`
	Commit string `json:"commit,omitempty"`

	raw json.RawMessage
}

type plainRecord Record

// UnmarshalJSON keeps the record's text, so that latest.json carries every
// member a script wrote.
func (r *Record) UnmarshalJSON(b []byte) error {
	var p plainRecord
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Record(p)
	r.raw = append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON writes the record as it was read (compacted), or its fields.
func (r Record) MarshalJSON() ([]byte, error) {
	if r.raw != nil {
		var b bytes.Buffer
		if err := json.Compact(&b, r.raw); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	return json.Marshal(plainRecord(r))
}

// Env is the environment of a run of bench/all.sh.
type Env struct {
	// Source is "measured" for a run of bench/all.sh, or says where figures
	// converted by hand come from.
	Source    string `json:"source"`
	Note      string `json:"note,omitempty"`
	Start     string `json:"start,omitempty"`
	End       string `json:"end,omitempty"`
	Nproc     int    `json:"nproc,omitempty"`
	Memory    string `json:"memory,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	Go        string `json:"go,omitempty"`
	Tessera   string `json:"tessera,omitempty"`
	MySQL     string `json:"mysql,omitempty"`
	Commit    string `json:"commit,omitempty"`
	Describe  string `json:"describe,omitempty"`
	Quick     bool   `json:"quick,omitempty"`
	Only      string `json:"only,omitempty"`
	LoadStart string `json:"loadavg_start,omitempty"`
	LoadEnd   string `json:"loadavg_end,omitempty"`
}

// Comparison is one script run by bench/all.sh.
type Comparison struct {
	Name       string  `json:"name"`
	Command    string  `json:"command"`
	Start      string  `json:"start,omitempty"`
	Seconds    float64 `json:"seconds"`
	LoadBefore string  `json:"loadavg_before,omitempty"`
	LoadAfter  string  `json:"loadavg_after,omitempty"`
	Exit       int     `json:"exit"`
	Note       string  `json:"note,omitempty"`
}

// Results is a whole run: what latest.json holds.
type Results struct {
	Format      string       `json:"format"`
	Env         Env          `json:"env"`
	Comparisons []Comparison `json:"comparisons"`
	Results     []Record     `json:"results"`
}

// Load reads a results directory of bench/all.sh (env.json,
// comparisons.jsonl, results.jsonl) or a latest.json file.
func Load(path string) (*Results, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	rs := &Results{Format: Format}
	if !st.IsDir() {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, rs); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if rs.Format != Format {
			return nil, fmt.Errorf("%s: format %q, want %q", path, rs.Format, Format)
		}
		return rs, nil
	}
	b, err := os.ReadFile(filepath.Join(path, "env.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &rs.Env); err != nil {
		return nil, fmt.Errorf("%s/env.json: %v", path, err)
	}
	if err := readLines(filepath.Join(path, "comparisons.jsonl"), func(b []byte) error {
		var c Comparison
		err := json.Unmarshal(b, &c)
		rs.Comparisons = append(rs.Comparisons, c)
		return err
	}); err != nil {
		return nil, err
	}
	if err := readLines(filepath.Join(path, "results.jsonl"), func(b []byte) error {
		var r Record
		err := json.Unmarshal(b, &r)
		rs.Results = append(rs.Results, r)
		return err
	}); err != nil {
		return nil, err
	}
	return rs, nil
}

// MarshalResults writes rs as latest.json: the environment indented, one
// comparison and one record a line.
func MarshalResults(rs *Results) ([]byte, error) {
	var b bytes.Buffer
	env, err := json.MarshalIndent(rs.Env, " ", " ")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "{\n \"format\": %q,\n \"env\": %s,\n", Format, env)
	list := func(name string, n int, item func(int) ([]byte, error), last bool) error {
		fmt.Fprintf(&b, " %q: [", name)
		for i := range n {
			line, err := item(i)
			if err != nil {
				return err
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("\n  ")
			b.Write(line)
		}
		if n > 0 {
			b.WriteString("\n ")
		}
		b.WriteString("]")
		if !last {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
		return nil
	}
	if err := list("comparisons", len(rs.Comparisons), func(i int) ([]byte, error) { return json.Marshal(rs.Comparisons[i]) }, false); err != nil {
		return nil, err
	}
	if err := list("results", len(rs.Results), func(i int) ([]byte, error) { return json.Marshal(rs.Results[i]) }, true); err != nil {
		return nil, err
	}
	b.WriteString("}\n")
	if !json.Valid(b.Bytes()) {
		return nil, errors.New("latest.json: not valid JSON")
	}
	return b.Bytes(), nil
}

// readLines calls f with each non-empty line of the file; a missing file
// has no lines.
func readLines(name string, f func([]byte) error) error {
	file, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := f(line); err != nil {
			return fmt.Errorf("%s:%d: %v", name, n, err)
		}
	}
	return sc.Err()
}

// Stat summarises the runs of one figure of one contender.
type Stat struct {
	N, Failed        int             // runs with a value, runs without (failed)
	Median, Min, Max float64         // over the runs with a value
	Of               int             // > 0: a median of Of runs not kept
	Runs             map[int]float64 // value by run number (runs numbered 1, 2, ...)
	Unit             string
	Date, Commit     string // of figures converted by hand
}

// Has reports whether there is a figure.
func (s Stat) Has() bool { return s.N > 0 }

// Stat returns the figure's summary over every run recorded.
func (rs *Results) Stat(comparison, contender, metric string) Stat {
	s := Stat{Runs: map[int]float64{}}
	var vs []float64
	for _, r := range rs.Results {
		if r.Comparison != comparison || r.Contender != contender || r.Metric != metric {
			continue
		}
		s.Unit = r.Unit
		if r.Value == nil || math.IsNaN(*r.Value) {
			s.Failed++
			continue
		}
		vs = append(vs, *r.Value)
		if r.Run > 0 { // run 0: the order of the runs was not kept
			s.Runs[r.Run] = *r.Value
		}
		s.Of = max(s.Of, r.Of)
		if r.Date != "" {
			s.Date = r.Date
		}
		if r.Commit != "" {
			s.Commit = r.Commit
		}
	}
	s.N = len(vs)
	if s.N > 0 {
		slices.Sort(vs)
		s.Median = median(vs)
		s.Min, s.Max = vs[0], vs[len(vs)-1]
	}
	return s
}

// median of sorted values: the middle one, or the mean of the two middle ones.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Quantiles returns the latency distributions recorded for a comparison
// (metric latency_quantiles), one per run, in run order.
func (rs *Results) Quantiles(comparison string) [][][2]float64 {
	var runs []Record
	for _, r := range rs.Results {
		if r.Comparison == comparison && r.Metric == "latency_quantiles" && len(r.Quantiles) > 0 {
			runs = append(runs, r)
		}
	}
	slices.SortStableFunc(runs, func(a, b Record) int { return a.Run - b.Run })
	var out [][][2]float64
	for _, r := range runs {
		out = append(out, r.Quantiles)
	}
	return out
}

// Comparisons lists the comparison names recorded, in the order first seen.
func (rs *Results) comparisonNames() []string {
	var names []string
	for _, r := range rs.Results {
		if !slices.Contains(names, r.Comparison) {
			names = append(names, r.Comparison)
		}
	}
	return names
}
