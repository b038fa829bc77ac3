package auditor

import (
	"sort"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// Freshness is judged from the witnesses, not from when the auditor polled:
// a log that stops publishing, or shows an auditor an old checkpoint, still
// answers every poll. The log republishes its checkpoint every few seconds
// and the witnesses cosign each with the time, so the checkpoint is known to
// have been current at the newest time a quorum of witnesses vouches for:
// the largest t such that the witnesses that cosigned at or after t meet the
// quorum. One witness with a fast clock cannot make a log look fresh, unless
// it alone is a quorum; and cosignatures dated more than the allowed skew
// ahead of the auditor's clock are not believed at all.

// quorumTime returns that t, whether there is one, and the witnesses whose
// cosignatures are dated too far in the future to count.
func quorumTime(p *checkpoint.Policy, cos map[string]time.Time, now time.Time, skew time.Duration) (time.Time, bool, []string) {
	type sig struct {
		name string
		t    time.Time
	}
	var sigs []sig
	var future []string
	for name, t := range cos {
		if t.After(now.Add(skew)) {
			future = append(future, name)
			continue
		}
		sigs = append(sigs, sig{name, t})
	}
	sort.Strings(future)
	sort.Slice(sigs, func(i, j int) bool { return sigs[i].t.After(sigs[j].t) })
	set := map[string]bool{}
	for _, s := range sigs {
		set[s.name] = true
		if p.Satisfied(set) {
			return s.t, true, future
		}
	}
	return time.Time{}, false, future
}
