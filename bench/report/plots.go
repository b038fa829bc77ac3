package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The plots' file names in the images directory.
const (
	ThroughputPNG = "throughput.png"
	ReceiptPNG    = "receipt-latency.png"
	FrontendsPNG  = "frontends.png"
)

var (
	colTidemark = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colBaseline = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
	colTarget   = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	palette     = []color.RGBA{
		{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
		{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
		{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	}
	dashed = []vg.Length{vg.Points(5), vg.Points(3)}
)

// WritePlots draws the three plots into dir (the ones with figures) and
// returns their names; a plot without figures is removed, so that no
// stale image stays beside the page.
func WritePlots(rs *Results, rows []Row, dir string) (Images, error) {
	var im Images
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return im, err
	}
	for _, p := range []struct {
		name string
		draw func() (drawn bool, err error)
		set  *string
	}{
		{ThroughputPNG, func() (bool, error) { return throughputPlot(rows, filepath.Join(dir, ThroughputPNG)) }, &im.Throughput},
		{ReceiptPNG, func() (bool, error) { return receiptPlot(rs, filepath.Join(dir, ReceiptPNG)) }, &im.Receipt},
		{FrontendsPNG, func() (bool, error) { return frontendsPlot(rs, filepath.Join(dir, FrontendsPNG)) }, &im.Frontends},
	} {
		drawn, err := p.draw()
		if err != nil {
			return im, fmt.Errorf("%s: %v", p.name, err)
		}
		if drawn {
			*p.set = p.name
		} else if err := os.Remove(filepath.Join(dir, p.name)); err != nil && !os.IsNotExist(err) {
			return im, err
		}
	}
	return im, nil
}

// throughputPlot: one panel per path with a figure, Tidemark's median as a
// bar beside its baseline's, whiskers from the slowest to the fastest run,
// and the target as a dashed line (for a ratio, the baseline's median
// times the ratio).
func throughputPlot(rows []Row, file string) (bool, error) {
	var panels []*plot.Plot
	for _, r := range rows {
		if !r.Panel || !r.C.Has() {
			continue
		}
		p := plot.New()
		p.Title.Text = r.Short
		p.Title.TextStyle.Font.Size = vg.Points(10)
		p.Y.Label.Text = r.C.Unit
		p.Y.Tick.Marker = kiloTicks{}
		p.Y.Min = 0
		stats := []Stat{r.C}
		names := []string{r.Contender}
		if r.Baseline != "" && r.B.Has() {
			stats = append(stats, r.B)
			names = append(names, r.Baseline)
		}
		top := 0.0
		for i, s := range stats {
			bar, err := plotter.NewBarChart(plotter.Values{s.Median}, vg.Points(36))
			if err != nil {
				return false, err
			}
			bar.XMin = float64(i)
			bar.Color = colTidemark
			if i == 1 {
				bar.Color = colBaseline
			}
			bar.LineStyle.Width = 0
			p.Add(bar)
			if s.N > 1 && s.Max > s.Min {
				eb := &plotter.YErrorBars{
					XYs:       plotter.XYs{{X: float64(i), Y: s.Median}},
					YErrors:   plotter.YErrors{{Low: s.Median - s.Min, High: s.Max - s.Median}},
					LineStyle: plotter.DefaultLineStyle,
					CapWidth:  vg.Points(10),
				}
				p.Add(eb)
			}
			top = math.Max(top, s.Max)
		}
		if t := r.Target; t != nil {
			level := math.NaN()
			switch {
			case t.Kind == "ratio>=" && r.B.Has():
				level = t.Value * r.B.Median
			case t.Kind == ">=" || t.Kind == "<=":
				level = t.Value
			}
			if !math.IsNaN(level) {
				l := hline(level, -0.5, float64(len(stats))-0.5)
				p.Add(l)
				top = math.Max(top, level)
			}
		}
		p.Y.Max = top * 1.15
		p.X.Min, p.X.Max = -0.6, float64(len(stats))-0.4
		p.NominalX(names...)
		p.X.Tick.Label.Font.Size = vg.Points(9)
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return false, nil
	}
	const cols = 3
	nrows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, nrows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, p := range panels {
		grid[i/cols][i%cols] = p
	}
	w, h := vg.Points(3*250), vg.Points(float64(nrows)*200+24)
	img := vgimg.New(w, h)
	dc := draw.New(img)
	// A caption across the top: what the bars, whiskers and lines are.
	caption := "Bars: medians (Tidemark blue, its baseline grey); whiskers: slowest to fastest run; dashed red: the target"
	sty := draw.TextStyle{Color: color.Black, Font: plot.DefaultFont, Handler: plot.DefaultTextHandler, XAlign: draw.XCenter, YAlign: draw.YTop}
	sty.Font.Size = vg.Points(10)
	dc.FillText(sty, vg.Point{X: w / 2, Y: h - vg.Points(6)}, caption)
	body := draw.Crop(dc, 0, 0, 0, -vg.Points(24))
	t := draw.Tiles{Rows: nrows, Cols: cols, PadX: vg.Points(12), PadY: vg.Points(12),
		PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	canvases := plot.Align(grid, t, body)
	for j := range grid {
		for i, p := range grid[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	return true, savePNG(img, file)
}

// receiptPlot: the latency distribution of receipts per rate (cumulative:
// the share of receipts at or below a latency), a thin line per run and a
// thick one for the median of the runs at each percentile; rates with only
// a few quantiles recorded (figures converted by hand) as points. The
// targets are the points (0.5 s, 50 %) and (1.0 s, 99 %): a curve must pass
// on or above and left of them.
func receiptPlot(rs *Results, file string) (bool, error) {
	type curve struct {
		name string
		receiptKey
	}
	var curves []curve
	for _, name := range rs.comparisonNames() {
		m := receiptComparison.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		rate, _ := strconv.Atoi(m[1])
		curves = append(curves, curve{name, receiptKey{rate, m[2]}})
	}
	slices.SortStableFunc(curves, func(a, b curve) int { return a.receiptKey.compare(b.receiptKey) })
	p := plot.New()
	p.Title.Text = "Time from POST to witnessed receipt"
	p.X.Label.Text = "latency (s)"
	p.Y.Label.Text = "receipts at or below (%)"
	p.Y.Min, p.Y.Max = 0, 100
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(4)
	p.Legend.YOffs = vg.Points(24)
	p.Add(plotter.NewGrid())
	xmax := 1.2
	drawn := false
	for i, c := range curves {
		col := palette[i%len(palette)]
		label := formatInt(float64(c.rate)) + "/s"
		if c.extra != "" {
			label += ", witnesses " + c.extra
		}
		runs := rs.Quantiles(c.name)
		if len(runs) > 0 {
			for _, q := range runs {
				l, err := plotter.NewLine(quantileXYs(q))
				if err != nil {
					return false, err
				}
				l.Color = fade(col)
				l.Width = vg.Points(0.75)
				p.Add(l)
				xmax = math.Max(xmax, valueAt(q, 99)*1.2)
			}
			med := medianCurve(runs)
			l, err := plotter.NewLine(quantileXYs(med))
			if err != nil {
				return false, err
			}
			l.Color = col
			l.Width = vg.Points(2)
			if c.extra != "" {
				l.Dashes = dashed
			}
			p.Add(l)
			if len(runs) == 1 {
				p.Legend.Add(label+" (1 run)", l)
			} else {
				p.Legend.Add(fmt.Sprintf("%s (median of %d runs)", label, len(runs)), l)
			}
			drawn = true
			continue
		}
		// Only some quantiles (p50, p90, p99): points.
		var pts plotter.XYs
		var have []string
		for _, m := range []struct {
			metric string
			pct    float64
		}{{"p50_s", 50}, {"p90_s", 90}, {"p99_s", 99}} {
			if s := rs.Stat(c.name, "tidemark", m.metric); s.Has() {
				pts = append(pts, plotter.XY{X: s.Median, Y: m.pct})
				have = append(have, strings.TrimSuffix(m.metric, "_s"))
				xmax = math.Max(xmax, s.Median*1.2)
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return false, err
		}
		l.Color, sc.Color = col, col
		l.Dashes = dashed
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(3)
		p.Add(l, sc)
		p.Legend.Add(label+" ("+strings.Join(have, ", ")+" only)", l, sc)
		drawn = true
	}
	if !drawn {
		return false, nil
	}
	cut := ""
	if xmax > 10 {
		xmax, cut = 10, " (x axis cut at 10 s)"
	}
	p.Title.Text += cut
	p.X.Min, p.X.Max = 0, xmax
	for _, v := range []float64{0.5, 1.0} {
		l := vline(v, 0, 100)
		p.Add(l)
	}
	tp, err := plotter.NewScatter(plotter.XYs{{X: 0.5, Y: 50}, {X: 1.0, Y: 99}})
	if err != nil {
		return false, err
	}
	tp.Color = colTarget
	tp.Shape = draw.CrossGlyph{}
	tp.Radius = vg.Points(5)
	p.Add(tp)
	p.Legend.Add("targets: p50 <= 0.5 s, p99 <= 1.0 s", tp)
	return true, p.Save(vg.Points(640), vg.Points(420), file)
}

// frontendsPlot: entries/s of POST /add (hammer) against the number of
// MySQL frontends, beside conformance/mysql (one server), and NDJSON
// events/s with 1 and 3 frontends.
func frontendsPlot(rs *Results, file string) (bool, error) {
	p := plot.New()
	p.Title.Text = "Throughput against MySQL frontends (one database)"
	p.X.Label.Text = "frontends"
	p.Y.Label.Text = "entries/s (POST /add), events/s (NDJSON)"
	p.Y.Tick.Marker = kiloTicks{}
	p.Y.Min = 0
	p.X.Min, p.X.Max = 0.5, 3.5
	p.X.Tick.Marker = plot.ConstantTicks{{Value: 1, Label: "1"}, {Value: 2, Label: "2"}, {Value: 3, Label: "3"}}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	top := 0.0
	drawn := false
	series := func(prefix, metric, label string, col color.RGBA, glyph draw.GlyphDrawer) error {
		var pts plotter.XYs
		var errs plotter.YErrors
		for f := 1; f <= 3; f++ {
			s := rs.Stat("mysql", prefix+strconv.Itoa(f), metric)
			if !s.Has() {
				continue
			}
			pts = append(pts, plotter.XY{X: float64(f), Y: s.Median})
			errs = append(errs, struct{ Low, High float64 }{s.Median - s.Min, s.Max - s.Median})
			top = math.Max(top, s.Max)
		}
		if len(pts) == 0 {
			return nil
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, sc.Color = col, col
		l.Width = vg.Points(1.5)
		sc.Shape = glyph
		sc.Radius = vg.Points(3.5)
		eb := &plotter.YErrorBars{XYs: pts, YErrors: errs, LineStyle: draw.LineStyle{Color: col, Width: vg.Points(1)}, CapWidth: vg.Points(8)}
		p.Add(l, sc, eb)
		p.Legend.Add(label, l, sc)
		drawn = true
		return nil
	}
	if err := series("tidemark-", "entries_per_sec", "tidemark log --mysql, POST /add (hammer)", colTidemark, draw.CircleGlyph{}); err != nil {
		return false, err
	}
	if err := series("ndjson-", "events_per_sec", "tidemark log --mysql, NDJSON batches of 1,000", palette[2], draw.TriangleGlyph{}); err != nil {
		return false, err
	}
	if s := rs.Stat("mysql", "conformance/mysql", "entries_per_sec"); s.Has() {
		l := hline(s.Median, 0.5, 3.5)
		l.Color = colBaseline
		sc, err := plotter.NewScatter(plotter.XYs{{X: 1, Y: s.Median}})
		if err != nil {
			return false, err
		}
		sc.Color = colBaseline
		sc.Shape = draw.BoxGlyph{}
		sc.Radius = vg.Points(3.5)
		p.Add(l, sc)
		if s.Max > s.Min {
			p.Add(&plotter.YErrorBars{XYs: plotter.XYs{{X: 1, Y: s.Median}},
				YErrors:   plotter.YErrors{{Low: s.Median - s.Min, High: s.Max - s.Median}},
				LineStyle: draw.LineStyle{Color: colBaseline, Width: vg.Points(1)}, CapWidth: vg.Points(8)})
		}
		p.Legend.Add("conformance/mysql, one server (median, dashed across)", l, sc)
		top = math.Max(top, s.Max)
		drawn = true
	}
	if !drawn {
		return false, nil
	}
	p.Y.Max = top * 1.3
	return true, p.Save(vg.Points(640), vg.Points(420), file)
}

// hline: a dashed red horizontal line at y from x0 to x1.
func hline(y, x0, x1 float64) *plotter.Line {
	l, _ := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	l.Color = colTarget
	l.Dashes = dashed
	l.Width = vg.Points(1.25)
	return l
}

// vline: a dashed red vertical line at x from y0 to y1.
func vline(x, y0, y1 float64) *plotter.Line {
	l, _ := plotter.NewLine(plotter.XYs{{X: x, Y: y0}, {X: x, Y: y1}})
	l.Color = colTarget
	l.Dashes = dashed
	l.Width = vg.Points(1)
	return l
}

// fade: col, lighter.
func fade(c color.RGBA) color.RGBA {
	return color.RGBA{R: c.R/3 + 170, G: c.G/3 + 170, B: c.B/3 + 170, A: 0xff}
}

// quantileXYs: (latency, percent) points of a distribution.
func quantileXYs(q [][2]float64) plotter.XYs {
	xys := make(plotter.XYs, 0, len(q))
	for _, pv := range q {
		xys = append(xys, plotter.XY{X: pv[1], Y: pv[0]})
	}
	return xys
}

// valueAt: the latency at percent p of a distribution (the nearest point at or
// above p), or 0.
func valueAt(q [][2]float64, p float64) float64 {
	for _, pv := range q {
		if pv[0] >= p {
			return pv[1]
		}
	}
	if len(q) > 0 {
		return q[len(q)-1][1]
	}
	return 0
}

// medianCurve: at each percentile of the first run, the median over runs of
// the latency there (a median of quantile functions).
func medianCurve(runs [][][2]float64) [][2]float64 {
	var out [][2]float64
	for _, pv := range runs[0] {
		var vs []float64
		for _, r := range runs {
			vs = append(vs, valueAt(r, pv[0]))
		}
		slices.Sort(vs)
		out = append(out, [2]float64{pv[0], median(vs)})
	}
	return out
}

// kiloTicks labels an axis of large numbers as 10k, 20k, ...
type kiloTicks struct{}

func (kiloTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	if hi < 1000 {
		return ticks
	}
	for i := range ticks {
		switch {
		case ticks[i].Label == "":
		case ticks[i].Value == 0:
			ticks[i].Label = "0"
		default:
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value/1000, 'f', -1, 64) + "k"
		}
	}
	return ticks
}

func savePNG(img *vgimg.Canvas, file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
