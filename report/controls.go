package report

import (
	"fmt"
	"strings"
	"time"
)

// day is how the report writes a time for people: fractions of a second
// only when there are some.
const day = "2006-01-02 15:04:05.999999999 UTC"

// notes are what a reader must know about the report's scope.
func notes(r *Report) []string {
	var n []string
	v := r.Verification
	switch {
	case r.Checkpoint == nil:
		n = append(n, "The log could not be verified: no witnessed checkpoint was found to check it against. The figures below are not evidence of anything.")
	case !v.Verified:
		n = append(n, fmt.Sprintf("The full verification did NOT succeed (%s): the figures below come from what the log served, which did not verify. See the findings.", v.Result))
	case v.ExitCode != 0:
		n = append(n, fmt.Sprintf("Every entry verified against the checkpoint, but the check found problems (%s): see the findings.", v.Result))
	}
	if c := r.Checkpoint; c != nil {
		// Cosignature times are whole seconds: the quorum may have been met
		// up to a second after its time says.
		if c.QuorumTime != nil && r.Period.To.After(c.QuorumTime.Add(time.Second)) {
			n = append(n, fmt.Sprintf("The period ends (%s) after the checkpoint was cosigned by a quorum (%s): entries the log received after the checkpoint's %d entries are not in this report. Run it again once the period is over to cover all of it.",
				r.Period.To.Format(day), c.QuorumTime.Format(day), c.Size))
		}
	}
	if r.Entries.Entries == 0 {
		n = append(n, "No entry of the log was received in the period.")
	}
	if r.Verification.RawLeaves > 0 {
		n = append(n, fmt.Sprintf("%d entries of the log are raw (written with POST /add): they carry no received time or source, so no period holds them; they are verified with the rest but not counted in the period.", r.Verification.RawLeaves))
	}
	if e := r.Entries; e.Commitments > e.Opened {
		why := "erased, or not served: see the verification's findings"
		if r.Verification.Unchecked > 0 {
			why = "erased, or not fetched (--skip-payloads)"
		}
		n = append(n, fmt.Sprintf("%d of the period's %d commitment entries have no event the report could read (%s): they are counted by source but not by action or outcome.", e.Commitments-e.Opened, e.Commitments, why))
	}
	if u := r.Verification.Unchecked; u > 0 {
		n = append(n, fmt.Sprintf("%d commitment entries' events were not fetched (--skip-payloads): the tree is verified, but not that the log still holds those events, or that they match their commitments.", u))
	}
	n = append(n, "Entries are placed in the period by their received time, which the log's clock stamped when it accepted them; an event's own timestamps (if any) are not used.")
	return n
}

// controls states, for each control the issue names, what the log and
// this report provide and what stays with the operator. It claims no
// compliance: that is for the operator and their assessor to conclude.
func controls(r *Report) []Control {
	verified := "This report's full verification recomputed the Merkle root from every entry and it did NOT match, or could not be completed: see the findings."
	if r.Verification.Verified && r.Checkpoint != nil {
		by := "cosigned by a quorum of the policy's witnesses"
		if r.Checkpoint.Quorum == "none" {
			by = "signed by the log (the policy asks no witness to cosign: nothing but the log's key stands behind it)"
		}
		verified = fmt.Sprintf("This report's full verification read all %d entries, recomputed the Merkle tree from them and matched its root and every hash tile against the checkpoint of size %d %s: any change to, removal of, or insertion among those entries after the checkpoint was signed would have made it fail.",
			r.Verification.Leaves, r.Checkpoint.Size, by)
	}
	span := "The log holds no entry with a received time."
	if f, l := r.Log.FirstReceived, r.Log.LastReceived; f != nil && l != nil {
		days := l.Sub(*f).Hours() / 24
		span = fmt.Sprintf("The log's entries were received from %s to %s (%.0f days). All %d of them were read from the log online when this report was generated (%s).",
			f.Format(day), l.Format(day), days, r.Verification.Leaves, r.Generated.Format(day))
	}
	erased := "No erasure covers entries of the period."
	if len(r.Erasures.Covering) > 0 {
		erased = fmt.Sprintf("%d erasure(s) cover entries of the period (%d commitment entries' contents erased); each is an entry of the log itself, with its reason, the token that made it and its time, listed in this report. The entries themselves remain in the tree, so the proof that they existed survives their content.",
			len(r.Erasures.Covering), r.Erasures.ErasedInPeriod)
	}
	return []Control{
		{
			ID:    "PCI DSS v4.0 10.3.4",
			Title: "File integrity monitoring or change-detection mechanisms are used on audit logs",
			Provides: []string{
				"Every entry is a leaf of a Merkle tree whose root the log signs in checkpoints that independent witnesses cosign. A witness cosigns a checkpoint only if it extends the last one it cosigned, so existing entries cannot be changed, removed or reordered without the change being detectable by anyone holding a later checkpoint.",
				verified,
				"`tidemark audit --follow` (with `--state` and `--alert-webhook`) re-checks the log every few seconds and raises an alert on a rollback, a fork shown to different parties (split view), a bad signature, a missing quorum or a stale log; `--full` re-reads every entry.",
			},
			Operator: []string{
				"Run the auditor continuously with alerts routed to people who act on them; this report is a check at one point in time, not monitoring.",
				"Choose witnesses operated independently of the log's operator, and keep the log's signing key protected: the guarantees rest on both.",
				"Change detection starts when an event reaches the log: events altered or withheld before they are sent, or systems that do not send their events, are outside what the log can detect.",
			},
		},
		{
			ID:    "PCI DSS v4.0 10.5 (10.5.1)",
			Title: "Retain audit log history for at least 12 months, with at least the most recent three months immediately available for analysis",
			Provides: []string{
				span,
				erased,
				"Retention erasures (tidemark log --retention) and manual erasures are logged entries with their reason and the token that made them, so content removed before 12 months is visible in a report like this one.",
			},
			Operator: []string{
				"Keep the log's storage, backups and any --retention setting at or beyond 12 months; this report shows what the log held when it was generated, not that it will be kept.",
				"An erased entry keeps its proof of existence but not its content: whether that meets the retention your assessor expects for those entries is for you to decide with them.",
				"If the log is younger than 12 months, or replaced an earlier one, keep the earlier records and their evidence too.",
			},
		},
		{
			ID:    "SOC 2 CC7.2",
			Title: "The entity monitors system components and the operation of those controls for anomalies indicative of malicious acts, natural disasters and errors",
			Provides: []string{
				"Counts of the period's entries by source (the token that sent them) and of its events by action and outcome, in this report: a source that fell silent, a change in volume, or unexpected actions or denials stand out.",
				"The auditor's rules (`tidemark audit --rules`) alert on events that match patterns, as they are logged; the auditor and the witnesses monitor the integrity of the log itself.",
			},
			Operator: []string{
				"Decide what is anomalous for your systems, monitor the systems themselves (the log records what its sources send; it does not watch them), and analyse and respond to what is found.",
				"Keep evidence of that review and response; this report is evidence about the log's record, not of monitoring activity.",
			},
		},
		{
			ID:    "ISO/IEC 27001:2022 Annex A 8.15",
			Title: "Logging: logs that record activities, exceptions, faults and other relevant events are produced, stored, protected and analysed",
			Provides: []string{
				"Stored and protected: entries are tamper-evident (witnessed Merkle tree, verified in full by this report), and each carries the log's received time and the name of the token that sent it, which the sender cannot set.",
				"Erasure, where the log allows it, is itself logged (what, why, by which token, when), so removal is distinguishable from tampering.",
			},
			Operator: []string{
				"Produced: choose which activities, exceptions and faults are logged, and configure every system to send them.",
				"Protected: control who holds writer, read and admin tokens; the log does not encrypt event content, so restrict reads (read tokens, or commitment mode) where events hold personal data or secrets.",
				"Keep the log server's clock synchronised (A.8.17): received times come from it.",
				"Analysed: review the logs and act on them.",
			},
		},
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=+@%,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commands are what a compliance auditor runs to re-check the report,
// with its values filled in.
func commands(r *Report) []Command {
	u := shellQuote(r.Log.URL)
	policy := r.Log.Policy
	if !strings.HasSuffix(policy, "\n") {
		policy += "\n"
	}
	eof := "EOF"
	for strings.Contains(policy, eof+"\n") {
		eof += "_"
	}
	cmds := []Command{{
		Purpose: "Save the policy the report was checked with as policy.txt. Compare its log and witness keys with keys you obtained from the log's operator and the witnesses' operators by other means: a report, like any document, can be produced by whoever holds a log.",
		Command: "cat > policy.txt <<'" + eof + "'\n" + policy + eof,
		Expect:  "",
	}, {
		Purpose: "Verify the whole log yourself: the checkpoint's signature and witness quorum, what each witness has seen, and every entry against the root.",
		Command: fmt.Sprintf("tidemark audit --policy policy.txt --log-url %s --full", u),
		Expect:  "result: verified, and a full: line with verified=true and a size at least this report's",
	}}
	if r.Checkpoint != nil {
		cmds[1].Expect = fmt.Sprintf("result: verified, and a full: line with verified=true and size %d or more (a larger log extends this one)", r.Checkpoint.Size)
	}
	if e := r.Entries; e.FirstIndex != nil {
		for _, i := range []uint64{*e.FirstIndex, *e.LastIndex} {
			cmds = append(cmds, Command{
				Purpose: fmt.Sprintf("Check entry %d of the period on its own: fetch its receipt (add -H \"Authorization: Bearer $TOKEN\" if the log needs a read token) and verify it offline with the policy.", i),
				Command: fmt.Sprintf("curl -sf %s/v1/receipt/%d > receipt-%d.json && tidemark verify --policy policy.txt receipt-%d.json", u, i, i, i),
				Expect:  "exit status 0, naming the witnesses that cosigned",
			})
			if *e.FirstIndex == *e.LastIndex {
				break
			}
		}
	}
	if r.Log.VKey != "" {
		cmds = append(cmds, Command{
			Purpose: "Check the log with Tessera's own checker, a program Tidemark did not write (it checks the tree, not the witnesses).",
			Command: fmt.Sprintf("printf '%%s\\n' %s > log.pub && go run github.com/transparency-dev/tessera/cmd/fsck@v1.0.4 --storage_url %s/ --public_key log.pub --ui=false",
				shellQuote(r.Log.VKey), u),
			Expect: "a line \"Successfully fsck'd log with size N\" (fsck v1.0.4 exits 0 even when it fails: read its output)",
		})
	}
	cmds = append(cmds, Command{
		Purpose: "Produce this report again and compare its figures.",
		Command: fmt.Sprintf("tidemark report --policy policy.txt --log %s --from %s --to %s --out report.html --json report.json",
			u, r.Period.From.Format(time.RFC3339Nano), r.Period.To.Format(time.RFC3339Nano)),
		Expect: "the same period figures (entries the log received in the period after this report's checkpoint would add to them)",
	})
	return cmds
}
