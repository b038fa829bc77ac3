package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark/auditor"
	"github.com/tidemark/tidemark/checkpoint"
)

// Format names this report's JSON schema; a change that is not an addition
// of fields gets a new one.
const Format = "tidemark-report/v1"

// Report is everything a report states, as its JSON holds it. Times are
// RFC 3339 in UTC; hashes are base64 (as in checkpoints) with a hex copy.
type Report struct {
	Format     string    `json:"format"`
	Generated  time.Time `json:"generated"`
	Version    string    `json:"tidemark_version"`
	Period     Period    `json:"period"`
	Log        Log       `json:"log"`
	Checkpoint *Signed   `json:"checkpoint"` // the witnessed checkpoint checked against; null if none
	// Earlier are checkpoints the auditor's state (--state) accepted before
	// this run; the new one was checked to extend them (consistency proof).
	Earlier      []Signed      `json:"earlier_checkpoints"`
	Verification Verification  `json:"verification"`
	Entries      PeriodEntries `json:"period_entries"`
	Erasures     Erasures      `json:"erasures"`
	Controls     []Control     `json:"controls"`
	Commands     []Command     `json:"commands"`
	// Notes are statements about this report's scope a reader must not miss
	// (the period runs past the checkpoint, the check failed, ...).
	Notes []string `json:"notes"`
}

// Period is [From, To): entries whose received time (the log's clock) is
// at or after From and before To.
type Period struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Log is the log the report is about.
type Log struct {
	Origin string `json:"origin"`
	URL    string `json:"url"`
	// Policy is the policy file, verbatim: the keys and quorum the
	// verification trusted.
	Policy string `json:"policy"`
	// VKey is the log key that signed the checkpoint.
	VKey string `json:"vkey"`
	// FirstReceived and LastReceived span the received times of every
	// entry of the checkpoint's tree that has one (raw entries have none).
	FirstReceived *time.Time `json:"first_received"`
	LastReceived  *time.Time `json:"last_received"`
}

// Signed is a signed checkpoint and who cosigned it.
type Signed struct {
	Origin  string `json:"origin"`
	Size    uint64 `json:"size"`
	Root    string `json:"root_hash"` // base64, as in the checkpoint
	RootHex string `json:"root_hex"`
	// Note is the signed note, verbatim: body, log signature, cosignatures.
	Note      string     `json:"note"`
	Cosigners []Cosigner `json:"cosigners"`
	// Quorum is the policy's quorum; QuorumTime the time by which a quorum
	// of witnesses had cosigned (every entry of the tree existed by then),
	// null when the cosignatures do not meet the quorum.
	Quorum     string     `json:"quorum"`
	QuorumTime *time.Time `json:"quorum_time"`
	// Witnesses are the policy's witnesses, cosigners or not.
	Witnesses []Witness `json:"witnesses"`
}

// Cosigner is a witness that cosigned a checkpoint, with the time in its
// cosignature.
type Cosigner struct {
	Name string    `json:"name"`
	Time time.Time `json:"time"`
}

// Witness is one of the policy's witnesses.
type Witness struct {
	Name     string     `json:"name"`
	URL      string     `json:"url"`
	VKey     string     `json:"vkey"`
	Cosigned bool       `json:"cosigned"`
	Time     *time.Time `json:"time"`
}

// Verification is the result of the full check (auditor.Full).
type Verification struct {
	// Result is "verified", "misbehaviour" or "unchecked", ExitCode the
	// auditor's exit status for it (0, 1, 2).
	Result   string `json:"result"`
	ExitCode int    `json:"exit_code"`
	// Verified: every leaf was read, hashed to the witnessed checkpoint's
	// root, and every hash tile matched.
	Verified     bool   `json:"verified"`
	Witnessed    bool   `json:"witnessed"`
	RootMatched  bool   `json:"root_matched"`
	TilesMatched bool   `json:"tiles_matched"`
	Size         uint64 `json:"size"`
	Leaves       uint64 `json:"leaves"`
	// EventLeaves, CommitmentLeaves, ErasureLeaves, RawLeaves and
	// BadLeaves are the auditor's counts of the leaves of each kind; they
	// add up to Leaves. Bad leaves claim to be a kind the log writes
	// without being one (or are erasures of their own index or later).
	EventLeaves      uint64 `json:"event_leaves"`
	CommitmentLeaves uint64 `json:"commitment_leaves"`
	ErasureLeaves    uint64 `json:"erasure_leaves"`
	RawLeaves        uint64 `json:"raw_leaves"`
	BadLeaves        uint64 `json:"bad_leaves"`
	// Of the commitment leaves: Opened, those whose event the log served
	// and that opened the commitment; Erased, those without an event that
	// an erasure leaf covers; Unchecked, those whose event was not fetched.
	// The rest are findings (missing-payload, bad-opening).
	Opened         uint64    `json:"opened"`
	Erased         uint64    `json:"erased"`
	Unchecked      uint64    `json:"unchecked"`
	ElapsedSeconds float64   `json:"elapsed_seconds"`
	Findings       []Finding `json:"findings"`
}

// Finding is one of the auditor's findings.
type Finding struct {
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Time     time.Time `json:"time"`
	Message  string    `json:"message"`
}

// PeriodEntries are the figures of the entries received in the period.
type PeriodEntries struct {
	Entries     uint64 `json:"entries"`
	Events      uint64 `json:"events"`
	Commitments uint64 `json:"commitments"`
	Erasures    uint64 `json:"erasures"`
	// Opened are the commitment leaves whose event the auditor opened and
	// verified against the commitment; their events are counted by action
	// and outcome with the event leaves'.
	Opened uint64 `json:"opened"`
	// Unparsed are entries whose received time is in the period but that
	// are not valid leaves (bad leaves); they are counted nowhere else.
	Unparsed      uint64     `json:"unparsed"`
	FirstIndex    *uint64    `json:"first_index"`
	LastIndex     *uint64    `json:"last_index"`
	FirstReceived *time.Time `json:"first_received"`
	LastReceived  *time.Time `json:"last_received"`
	// BySource counts every entry (event, commitment, erasure) by the name
	// of the token that sent it; EventsBySource the events whose content
	// was read (event leaves and opened commitment leaves).
	BySource       map[string]uint64 `json:"by_source"`
	EventsBySource map[string]uint64 `json:"events_by_source"`
	// ByAction and ByOutcome count the same events by the action and
	// outcome the search package finds in them ("" when the event has
	// none). Commitment leaves not opened (erased, or not served) are in
	// Commitments and BySource only.
	ByAction  map[string]uint64 `json:"by_action"`
	ByOutcome map[string]uint64 `json:"by_outcome"`
}

// Erasures are the erasure leaves about the period.
type Erasures struct {
	// InPeriod are the erasure leaves received in the period; Covering
	// those, wherever they are in the log, whose ranges cover entries of
	// the period.
	InPeriod []Erasure `json:"in_period"`
	Covering []Erasure `json:"covering_period"`
	// ErasedInPeriod is how many of the period's commitment leaves some
	// erasure covers (their content is gone; the leaves stay).
	ErasedInPeriod uint64 `json:"erased_in_period"`
}

// Erasure is one erasure leaf.
type Erasure struct {
	Index    uint64    `json:"index"`
	Received time.Time `json:"received"`
	// Source is the name of the admin token that erased ("retention" for
	// the retention loop).
	Source string      `json:"source"`
	Reason string      `json:"reason"`
	Ranges [][2]uint64 `json:"ranges"` // half-open [from, to)
	// Entries is the number of indexes the ranges cover; PeriodEntries
	// those of them received in the period, and PeriodCommitments those of
	// them that are commitment leaves (erasing anything else is a no-op).
	Entries           uint64 `json:"entries"`
	PeriodEntries     uint64 `json:"period_entries"`
	PeriodCommitments uint64 `json:"period_commitments"`
}

// Control is what the log and this report provide towards one control, and
// what they leave to the operator.
type Control struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Provides []string `json:"provides"`
	Operator []string `json:"operator"`
}

// Command is a command that re-checks part of the report independently.
type Command struct {
	Purpose string `json:"purpose"`
	Command string `json:"command"`
	Expect  string `json:"expect"`
}

// Options configure Run.
type Options struct {
	// Auditor configures the verification; Run sets its OnLeaf and Rescan.
	Auditor auditor.Config
	// PolicyText is the policy file, verbatim, for the report.
	PolicyText []byte
	// From and To bound the period: [From, To).
	From, To time.Time
	// Version is the tidemark version, for the report.
	Version string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Run runs the full verification of the log, reading every leaf, and
// builds the report from what it read. The error is only for a cancelled
// ctx or a configuration the auditor refuses; a log that fails
// verification gives a report that says so (Verification.Result).
func Run(ctx context.Context, o Options) (*Report, error) {
	if !o.From.Before(o.To) {
		return nil, errors.New("report: the period is empty: --from must be before --to")
	}
	if o.Auditor.Policy == nil {
		return nil, errors.New("report: a policy is required")
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	col := newCollector(o.From, o.To)
	cfg := o.Auditor
	cfg.OnLeaf, cfg.OnOpened = col.leaf, col.opened
	cfg.Rescan = true
	if cfg.Now == nil {
		cfg.Now = now
	}
	a, err := auditor.New(cfg)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	earlier := a.Accepted()
	ar, err := a.Full(ctx)
	if err != nil {
		return nil, err
	}
	p := cfg.Policy
	rep := &Report{
		Format:    Format,
		Generated: now().UTC().Truncate(time.Second),
		Version:   o.Version,
		Period:    Period{From: o.From.UTC(), To: o.To.UTC()},
		Log:       Log{Origin: p.Origin(), URL: logURL(cfg), Policy: string(o.PolicyText)},
		Earlier:   []Signed{},
		Notes:     []string{},
	}
	var signed []byte
	if ar.Full != nil {
		signed = ar.Full.Signed
	}
	if signed != nil {
		s := describe(p, signed)
		rep.Checkpoint = &s
		rep.Log.VKey = signingKey(p, signed)
	}
	if earlier != nil && (signed == nil || !bytes.Equal(earlier, signed)) {
		rep.Earlier = append(rep.Earlier, describe(p, earlier))
	}
	rep.Verification = verification(ar)
	rep.Log.FirstReceived, rep.Log.LastReceived = receivedTime(col.logFirst), receivedTime(col.logLast)
	rep.Entries = periodEntries(col)
	rep.Erasures.InPeriod, rep.Erasures.Covering, rep.Erasures.ErasedInPeriod = col.erasureFigures()
	if rep.Erasures.InPeriod == nil {
		rep.Erasures.InPeriod = []Erasure{}
	}
	if rep.Erasures.Covering == nil {
		rep.Erasures.Covering = []Erasure{}
	}
	rep.Notes = notes(rep)
	rep.Controls = controls(rep)
	rep.Commands = commands(rep)
	return rep, nil
}

// logURL is the URL the auditor reads the log at: Config.LogURL, else the
// policy's first log line with one.
func logURL(cfg auditor.Config) string {
	u := cfg.LogURL
	if u == "" {
		for _, l := range cfg.Policy.Logs {
			if l.URL != "" {
				u = l.URL
				break
			}
		}
	}
	return strings.TrimSuffix(u, "/")
}

// describe reads a signed checkpoint the auditor accepted: its body, and
// each cosignature by a witness of the policy.
func describe(p *checkpoint.Policy, signed []byte) Signed {
	s := Signed{Note: string(signed), Quorum: p.Quorum, Cosigners: []Cosigner{}, Witnesses: []Witness{}}
	c, _, err := checkpoint.Open(signed, p.LogVerifiers()...)
	if err == nil {
		s.Origin, s.Size = c.Origin, c.Size
		s.Root, s.RootHex = base64.StdEncoding.EncodeToString(c.Hash), hex.EncodeToString(c.Hash)
	}
	cos := map[string]time.Time{}
	for _, w := range p.Witnesses {
		got, err := checkpoint.Cosignatures(signed, w.Verifier)
		if err != nil {
			continue
		}
		for _, t := range got {
			cos[w.Name] = t.UTC()
		}
	}
	for _, w := range p.Witnesses {
		ws := Witness{Name: w.Name, URL: w.URL, VKey: w.VKey}
		if t, ok := cos[w.Name]; ok {
			ws.Cosigned, ws.Time = true, &t
		}
		s.Witnesses = append(s.Witnesses, ws)
	}
	for _, n := range slices.Sorted(maps.Keys(cos)) {
		s.Cosigners = append(s.Cosigners, Cosigner{Name: n, Time: cos[n]})
	}
	if t, ok := p.QuorumCosignedBy(cos); ok && p.Satisfied(keysTrue(cos)) {
		t = t.UTC()
		s.QuorumTime = &t
	}
	return s
}

func keysTrue(m map[string]time.Time) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// signingKey is the policy's log key that signed the checkpoint.
func signingKey(p *checkpoint.Policy, signed []byte) string {
	for _, l := range p.Logs {
		if _, _, err := checkpoint.Open(signed, l.Verifier); err == nil {
			return l.VKey
		}
	}
	return ""
}

func verification(ar *auditor.Report) Verification {
	v := Verification{Witnessed: ar.Witnessed, ExitCode: ar.ExitCode(), Findings: []Finding{}}
	v.Result = [...]string{"verified", "misbehaviour", "unchecked"}[v.ExitCode]
	has := map[auditor.Kind]bool{}
	for _, f := range ar.Findings {
		has[f.Kind] = true
		v.Findings = append(v.Findings, Finding{Kind: string(f.Kind), Severity: f.Kind.Severity(), Time: f.Time.UTC(), Message: f.Message})
	}
	if f := ar.Full; f != nil {
		v.Verified = f.Verified
		v.Size = f.Checkpoint.Size
		n := f.Counts
		v.Leaves, v.EventLeaves, v.CommitmentLeaves, v.ErasureLeaves, v.RawLeaves, v.BadLeaves = n.Leaves, n.Event, n.Commitment, n.Erasure, n.Raw, n.Bad
		v.Opened, v.Erased, v.Unchecked = n.Opened, n.Erased, n.Unchecked
		v.ElapsedSeconds = f.Elapsed.Seconds()
		complete := f.Counts.Leaves == f.Checkpoint.Size && !has[auditor.KindUnavailable]
		v.RootMatched = f.Verified || complete && !has[auditor.KindRootMismatch]
		v.TilesMatched = f.Verified || complete && !has[auditor.KindBadTiles]
	}
	if !v.Verified && v.ExitCode == auditor.ExitVerified {
		// Not reached: a full check that does not verify says why.
		v.ExitCode, v.Result = auditor.ExitUnchecked, "unchecked"
	}
	return v
}

func receivedTime(s string) *time.Time {
	if s == "" {
		return nil
	}
	t, err := time.Parse(checkpoint.ReceivedFormat, s)
	if err != nil {
		return nil
	}
	return &t
}

func periodEntries(col *collector) PeriodEntries {
	col.mu.Lock()
	defer col.mu.Unlock()
	p := col.p
	e := PeriodEntries{
		Entries: p.entries, Events: p.events, Commitments: p.commitments, Erasures: p.erasures, Opened: p.opened, Unparsed: p.unparsed,
		FirstReceived: receivedTime(p.firstRcv), LastReceived: receivedTime(p.lastRcv),
		BySource: maps.Clone(p.bySource), EventsBySource: maps.Clone(p.eventsBySource),
		ByAction: maps.Clone(p.byAction), ByOutcome: maps.Clone(p.byOutcome),
	}
	if p.entries > 0 {
		first, last := p.firstIndex, p.lastIndex
		e.FirstIndex, e.LastIndex = &first, &last
	}
	return e
}
