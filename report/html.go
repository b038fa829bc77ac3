package report

import (
	"cmp"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var htmlText string

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"when": func(t any) string {
		switch t := t.(type) {
		case time.Time:
			return t.UTC().Format(day)
		case *time.Time:
			if t == nil {
				return "—"
			}
			return t.UTC().Format(day)
		}
		return ""
	},
	"idx": func(i *uint64) string {
		if i == nil {
			return "—"
		}
		return fmt.Sprint(*i)
	},
	"sorted":    sortedCounts,
	"lastIndex": func(size uint64) uint64 { return size - 1 },
	"ranges": func(rs [][2]uint64) string {
		var b strings.Builder
		for i, r := range rs {
			if i > 0 {
				b.WriteString(", ")
			}
			if i == 20 {
				fmt.Fprintf(&b, "… and %d more", len(rs)-i)
				break
			}
			fmt.Fprintf(&b, "[%d, %d)", r[0], r[1])
		}
		return b.String()
	},
	"name": func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	},
	"code": func(s string) template.HTML {
		// Backticks in the controls' text mark commands.
		parts := strings.Split(s, "`")
		var b strings.Builder
		for i, p := range parts {
			if i%2 == 1 {
				b.WriteString("<code>" + template.HTMLEscapeString(p) + "</code>")
			} else {
				b.WriteString(template.HTMLEscapeString(p))
			}
		}
		return template.HTML(b.String())
	},
}).Parse(htmlText))

// count is a name and how many.
type count struct {
	Name  string
	Count uint64
}

// sortedCounts orders counts by decreasing count, then name.
func sortedCounts(m map[string]uint64) []count {
	var out []count
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, count{k, m[k]})
	}
	slices.SortStableFunc(out, func(a, b count) int { return cmp.Compare(b.Count, a.Count) })
	return out
}

// WriteHTML writes the report as one self-contained HTML page: inline CSS,
// no scripts, nothing fetched from elsewhere.
func (r *Report) WriteHTML(w io.Writer) error {
	return htmlTemplate.Execute(w, r)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}
