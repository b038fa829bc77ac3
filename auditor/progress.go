package auditor

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Progress is the state of a full check, reported to Config.OnProgress.
type Progress struct {
	Done, Total uint64        // leaves checked (from index 0) and the target size
	Rate        float64       // leaves a second in this run so far
	Elapsed     time.Duration // in this run
	ETA         time.Duration // at the current rate; 0 when unknown
	Opened      uint64        // commitment leaves whose content opened, from index 0
}

// IsTerminal reports whether f is a terminal (a character device).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// ProgressPrinter returns an OnProgress function writing to w: a bar
// redrawn in place on a terminal, a plain line every lineEvery otherwise.
func ProgressPrinter(w io.Writer, terminal bool, lineEvery time.Duration) func(Progress) {
	return NamedProgressPrinter(w, terminal, lineEvery, "full check")
}

// NamedProgressPrinter is ProgressPrinter for another long job: its plain
// lines start with name.
func NamedProgressPrinter(w io.Writer, terminal bool, lineEvery time.Duration, name string) func(Progress) {
	var last time.Time
	return func(p Progress) {
		if terminal {
			const width = 30
			frac := 1.0
			if p.Total > 0 {
				frac = float64(p.Done) / float64(p.Total)
			}
			n := int(frac * width)
			fmt.Fprintf(w, "\r[%s%s] %5.1f%% %d/%d entries %s/s ETA %s \033[K",
				strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac, p.Done, p.Total, si(p.Rate), eta(p))
			if p.Done >= p.Total {
				fmt.Fprintln(w)
			}
			return
		}
		if now := time.Now(); p.Done >= p.Total || now.Sub(last) >= lineEvery {
			last = now
			var opened string
			if p.Opened > 0 {
				opened = fmt.Sprintf(", %d contents opened", p.Opened)
			}
			fmt.Fprintf(w, "%s: %d/%d entries (%.1f%%)%s, %s entries/s, ETA %s\n",
				name, p.Done, p.Total, 100*float64(p.Done)/float64(max(p.Total, 1)), opened, si(p.Rate), eta(p))
		}
	}
}

func eta(p Progress) string {
	if p.Done >= p.Total {
		return "0s"
	}
	if p.ETA == 0 {
		return "?"
	}
	return p.ETA.Round(time.Second).String()
}

func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
