package report

import (
	"bytes"
	"fmt"
	"html"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func eventLeaf(t *testing.T, s int, source, action string) []byte {
	t.Helper()
	b, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(fmt.Sprintf(`{"action":%q,"outcome":"success"}`, action)), at(s), source, "")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// commitmentLeaf returns a commitment leaf to an event with action, and
// the event leaf it commits to.
func commitmentLeaf(t *testing.T, s int, source, action string) (leaf, event []byte) {
	event = eventLeaf(t, s, source, action)
	salt := bytes.Repeat([]byte{byte(s)}, checkpoint.SaltSize)
	return checkpoint.AppendCommitmentLeaf(nil, checkpoint.CommitmentLeaf{Received: at(s), Source: source, Commitment: checkpoint.Commit(salt, event)}), event
}

func erasureLeafBytes(t *testing.T, s int, source, reason string, ranges ...checkpoint.IndexRange) []byte {
	t.Helper()
	b, err := checkpoint.AppendErasureLeaf(nil, checkpoint.Erasure{Received: at(s), Source: source, Entries: ranges, Reason: reason})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handBuiltLog is a log of every kind of leaf around the period [10 s, 20 s):
//
//	0-4   events before the period (source a)
//	5-9   commitment leaves in the period (source b)
//	10-12 events in the period (source a; actions x, y, x)
//	13    an erasure in the period by admin: [1,2) and [5,7)
//	14    a raw entry
//	15    an event after the period
//	16    an erasure after the period by retention: [0,5) and [8,9)
//	17    an erasure after the period of the entry after it: [15,16)
//	18    claims to be an event leaf in the period, and is not canonical
//	19    an erasure in the period of its own index (a bad leaf)
//
// and the events of the commitment leaves that are not erased (7: z, 9: x),
// which the auditor would open.
func handBuiltLog(t *testing.T) ([][]byte, map[uint64]checkpoint.Opening) {
	var leaves [][]byte
	for i := range 5 {
		leaves = append(leaves, eventLeaf(t, 1+i, "a", "early"))
	}
	opened := map[uint64]checkpoint.Opening{}
	for i, act := range []string{"v", "w", "z", "u", "x"} {
		leaf, event := commitmentLeaf(t, 11+i, "b", act)
		if i == 2 || i == 4 {
			opened[uint64(len(leaves))] = checkpoint.Opening{Salt: bytes.Repeat([]byte{byte(11 + i)}, checkpoint.SaltSize), Leaf: event}
		}
		leaves = append(leaves, leaf)
	}
	for i, act := range []string{"x", "y", "x"} {
		leaves = append(leaves, eventLeaf(t, 16+i, "a", act))
	}
	leaves = append(leaves,
		erasureLeafBytes(t, 19, "admin", "GDPR request 42", checkpoint.IndexRange{From: 1, To: 2}, checkpoint.IndexRange{From: 5, To: 7}),
		[]byte("raw bytes from POST /add"),
		eventLeaf(t, 25, "a", "late"),
		erasureLeafBytes(t, 30, "retention", "retention: older than 720h0m0s", checkpoint.IndexRange{From: 0, To: 5}, checkpoint.IndexRange{From: 8, To: 9}),
		erasureLeafBytes(t, 31, "admin", "not about the period", checkpoint.IndexRange{From: 15, To: 16}),
		[]byte(`{"event":{"b":1,"a":2},"received":"`+at(12).Format(checkpoint.ReceivedFormat)+`","source":"a","v":1}`),
		erasureLeafBytes(t, 19, "admin", "of itself", checkpoint.IndexRange{From: 19, To: 20}),
	)
	return leaves, opened
}

// TestCollectorHandBuiltLeaves feeds every kind of leaf to the collector
// from several goroutines in a random order, as the auditor's workers do,
// and checks every figure.
func TestCollectorHandBuiltLeaves(t *testing.T) {
	leaves, opened := handBuiltLog(t)
	if k := kindOf(leaves[18]); k != checkpoint.KindEvent {
		t.Fatalf("the bad leaf is %v, want it to claim to be an event leaf", k)
	}
	for round := range 5 {
		c := newCollector(at(10), at(20))
		order := rand.New(rand.NewPCG(uint64(round), 1)).Perm(len(leaves))
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for j := w; j < len(order); j += 4 {
					i := order[j]
					c.leaf(uint64(i), bytes.Clone(leaves[i]))
					if o, ok := opened[uint64(i)]; ok {
						c.opened(uint64(i), bytes.Clone(o.Leaf))
					}
				}
			})
		}
		wg.Wait()

		if c.unparsed != 2 || len(c.erasures) != 3 {
			t.Fatalf("%d unparsed, want 2 (18 and 19); %d erasures, want 3", c.unparsed, len(c.erasures))
		}
		if c.logFirst != at(1).Format(checkpoint.ReceivedFormat) || c.logLast != at(31).Format(checkpoint.ReceivedFormat) {
			t.Errorf("log span %s..%s", c.logFirst, c.logLast)
		}
		e := periodEntries(c)
		if e.Entries != 9 || e.Events != 3 || e.Commitments != 5 || e.Opened != 2 || e.Erasures != 1 || e.Unparsed != 2 {
			t.Errorf("period: %+v", e)
		}
		if *e.FirstIndex != 5 || *e.LastIndex != 13 || !e.FirstReceived.Equal(at(11)) || !e.LastReceived.Equal(at(19)) {
			t.Errorf("period bounds: %d..%d, %v..%v", *e.FirstIndex, *e.LastIndex, e.FirstReceived, e.LastReceived)
		}
		for name, got := range map[string]map[string]uint64{"by_source": e.BySource, "events_by_source": e.EventsBySource, "by_action": e.ByAction, "by_outcome": e.ByOutcome} {
			want := map[string]string{
				"by_source": "map[a:3 admin:1 b:5]", "events_by_source": "map[a:3 b:2]",
				"by_action": "map[x:3 y:1 z:1]", "by_outcome": "map[success:5]",
			}[name]
			if fmt.Sprint(got) != want {
				t.Errorf("%s %v, want %s", name, got, want)
			}
		}
		in, covering, erased := c.erasureFigures()
		if len(in) != 1 || in[0].Index != 13 || in[0].Source != "admin" || in[0].Reason != "GDPR request 42" || !in[0].Received.Equal(at(19)) ||
			fmt.Sprint(in[0].Ranges) != "[[1 2] [5 7]]" || in[0].Entries != 3 || in[0].PeriodEntries != 2 || in[0].PeriodCommitments != 2 {
			t.Errorf("erasures in the period: %+v", in)
		}
		if len(covering) != 2 || covering[0].Index != 13 || covering[1].Index != 16 || covering[1].Source != "retention" ||
			covering[1].PeriodEntries != 1 || covering[1].PeriodCommitments != 1 || covering[1].Entries != 6 {
			t.Errorf("erasures covering the period: %+v", covering)
		}
		if erased != 3 {
			t.Errorf("%d commitment leaves of the period erased, want 3 (5, 6, 8)", erased)
		}
	}
}

// An erasure covering a wide range, and ranges that touch the period's
// edges, are counted exactly.
func TestIndexSetCountIn(t *testing.T) {
	s := indexSet{}
	for _, i := range []uint64{0, 255, 256, 1000, 1 << 40} {
		s.add(i)
	}
	union := indexSet{}
	for _, c := range []struct {
		from, to, want uint64
	}{
		{0, 1, 1}, {0, 256, 2}, {255, 257, 2}, {1, 255, 0}, {0, 1 << 50, 5}, {1001, 1 << 40, 0}, {1 << 40, 1<<40 + 1, 1}, {5, 5, 0},
	} {
		if got := s.countIn(c.from, c.to, union); got != c.want {
			t.Errorf("countIn(%d, %d) = %d, want %d", c.from, c.to, got, c.want)
		}
	}
	if n := union.countIn(0, 1<<62, nil); n != 5 {
		t.Errorf("union holds %d, want 5", n)
	}
	if !s.has(1<<40) || s.has(1) {
		t.Error("has")
	}
}

var externalRef = regexp.MustCompile(`(?i)<script|<link|<iframe|<img|@import|url\(|(src|href)\s*=\s*["']?\s*(https?:|//)`)

// The HTML of a report with erasures and hostile strings (a reason and a
// source name with markup, a policy URL with a script) lists the erasures,
// escapes everything and refers to nothing outside itself.
func TestHTMLErasuresAndEscaping(t *testing.T) {
	c := newCollector(at(10), at(20))
	leaves, _ := handBuiltLog(t)
	for i, l := range leaves {
		c.leaf(uint64(i), l)
	}
	c.leaf(20, erasureLeafBytes(t, 15, `<img src="https://evil.example/x.png">`, `<script src="https://evil.example/x.js"></script>`, checkpoint.IndexRange{From: 9, To: 10}))
	rep := &Report{
		Format: Format, Generated: at(100), Version: "test", Period: Period{From: at(10), To: at(20)},
		Log:     Log{Origin: "example.com/log", URL: `https://log.example.com"><script>alert(1)</script>`, Policy: "log example.com/log+1234+AAAA https://log.example.com\nquorum none\n"},
		Earlier: []Signed{},
	}
	rep.Verification = Verification{Result: "misbehaviour", ExitCode: 1, Findings: []Finding{{Kind: "root-mismatch", Severity: "critical", Message: "the log's 19 leaves hash to root X"}}}
	rep.Entries = periodEntries(c)
	rep.Erasures.InPeriod, rep.Erasures.Covering, rep.Erasures.ErasedInPeriod = c.erasureFigures()
	rep.Notes = notes(rep)
	rep.Controls = controls(rep)
	rep.Commands = commands(rep)
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if m := externalRef.FindString(b.String()); m != "" {
		t.Errorf("the HTML refers outside itself: %q", m)
	}
	h := html.UnescapeString(b.String())
	for _, want := range []string{
		"NOT VERIFIED (misbehaviour)", "root-mismatch",
		"<td>13</td><td>2026-03-01 00:00:19 UTC</td><td>admin</td><td>GDPR request 42</td><td>[1, 2), [5, 7)</td>",
		"<td>16</td><td>2026-03-01 00:00:30 UTC</td><td>retention</td><td>retention: older than 720h0m0s</td><td>[0, 5), [8, 9)</td><td class=\"n\">1</td><td class=\"n\">1</td>",
		"<p>4 commitment entries of the period",
		`<script src="https://evil.example/x.js"></script>`, // as text, unescaped here
	} {
		if !strings.Contains(h, want) {
			t.Errorf("the HTML lacks %q", want)
		}
	}
	// Verified entries and a finding (a stale log, say): not a plain "Verified".
	rep.Checkpoint = &Signed{Size: 19}
	rep.Verification = Verification{Result: "misbehaviour", ExitCode: 1, Verified: true, Leaves: 19, Findings: []Finding{{Kind: "stale", Severity: "critical"}}}
	rep.Notes = notes(rep)
	var b2 bytes.Buffer
	if err := rep.WriteHTML(&b2); err != nil {
		t.Fatal(err)
	}
	if s := b2.String(); strings.Contains(s, "<strong>Verified.</strong>") || !strings.Contains(s, "Entries verified, but the check found problems (misbehaviour)") ||
		!strings.Contains(rep.Notes[0], "but the check found problems") {
		t.Errorf("verified entries with a finding: notes %q", rep.Notes)
	}
	if strings.Contains(b.String(), "<script") || strings.Contains(b.String(), "<img") {
		t.Error("markup from the log reached the HTML unescaped")
	}
	for _, cmd := range rep.Commands {
		if strings.Contains(cmd.Command, "<script>") && !strings.Contains(cmd.Command, `'https://log.example.com"><script>alert(1)</script>'`) {
			t.Errorf("a command with the URL unquoted: %s", cmd.Command)
		}
	}
}
