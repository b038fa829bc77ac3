package checkpoint

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// MaxPolicySize bounds a policy file: about 400 witnesses, far more than any
// quorum needs.
const MaxPolicySize = 64 << 10

// ErrQuorum is wrapped by the error Policy.Verify returns when a checkpoint
// is validly signed by the log but not cosigned by a quorum of witnesses.
var ErrQuorum = errors.New("checkpoint: witness quorum not met")

// A Policy says what a verifier trusts: the keys of one log, a set of
// witnesses, and the quorum of them that must cosign a checkpoint. It is read
// from the tlog-policy text format by ParsePolicy; see the package doc.
type Policy struct {
	Logs      []PolicyLog     // at least one; all for one origin
	Witnesses []PolicyWitness // in file order
	Groups    []PolicyGroup   // in file order; members come before their group
	Quorum    string          // a group or witness name, or "none"
}

// A PolicyLog is a "log VKEY [URL]" line.
type PolicyLog struct {
	Origin   string // the key's name
	VKey     string
	Verifier note.Verifier // from NewLogVerifier
	URL      string        // "" when not given
}

// A PolicyWitness is a "witness NAME VKEY [URL]" line.
type PolicyWitness struct {
	Name     string // the policy's name for the witness, not necessarily the key's name
	VKey     string
	Verifier note.Verifier // from NewWitnessVerifier
	URL      string        // "" when not given
}

// A PolicyGroup is a "group NAME K|any|all MEMBER..." line, with "any" read
// as 1 and "all" as the number of members.
type PolicyGroup struct {
	Name      string
	Threshold int      // 1 <= Threshold <= len(Members)
	Members   []string // witness or earlier group names, each at most once
}

// ParsePolicy parses a policy in the tlog-policy grammar, strictly: see the
// package doc for the rules. Errors name the line.
func ParsePolicy(b []byte) (*Policy, error) {
	if len(b) > MaxPolicySize {
		return nil, fmt.Errorf("checkpoint: policy is %d bytes, more than the limit of %d", len(b), MaxPolicySize)
	}
	if !utf8.Valid(b) {
		return nil, errors.New("checkpoint: policy is not valid UTF-8")
	}
	var (
		p          = &Policy{}
		defined    = make(map[string]int) // witness and group names: the line defining them
		keys       = make(map[string]int) // raw public keys: the line with that key
		keyIDs     = make(map[string]int) // name+hash key IDs: the line with that ID
		quorumLine int                    // the line of the quorum, or 0
		logLine    int                    // the line of the first log key
	)
	text := string(b)
	text, _ = strings.CutSuffix(text, "\n") // a final newline ends the last line, not starts another
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		errorf := func(format string, args ...any) error {
			return fmt.Errorf("checkpoint: policy line %d: %s", n, fmt.Sprintf(format, args...))
		}
		for _, r := range line {
			if r == '\r' {
				return nil, errorf("carriage return: save the file with \\n line endings")
			}
			if r < 0x20 && r != '\t' || r == 0x7f {
				return nil, errorf("control character %U", r)
			}
		}
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "log":
			if len(f) != 2 && len(f) != 3 {
				return nil, errorf("want \"log VKEY [URL]\", got %d fields", len(f))
			}
			v, err := NewLogVerifier(f[1])
			if err != nil {
				return nil, errorf("%s", trimPrefix(err))
			}
			if len(p.Logs) > 0 && v.Name() != p.Origin() {
				return nil, errorf("log key for origin %q, but line %d has a key for %q: a policy is for one log (several keys for one origin are a key rotation)",
					v.Name(), logLine, p.Origin())
			}
			if err := checkKey(f[1], keyTypeEd25519, n, keys, keyIDs); err != nil {
				return nil, errorf("%s", err)
			}
			u, err := policyURL(f, 2)
			if err != nil {
				return nil, errorf("%s", err)
			}
			if logLine == 0 {
				logLine = n
			}
			p.Logs = append(p.Logs, PolicyLog{Origin: v.Name(), VKey: f[1], Verifier: v, URL: u})

		case "witness":
			if len(f) != 3 && len(f) != 4 {
				return nil, errorf("want \"witness NAME VKEY [URL]\", got %d fields", len(f))
			}
			if err := checkNewName(f[1], defined); err != nil {
				return nil, errorf("witness %s", err)
			}
			v, err := NewWitnessVerifier(f[2])
			if err != nil {
				return nil, errorf("witness %q: %s", f[1], trimPrefix(err))
			}
			if err := checkKey(f[2], keyTypeCosignatureV1, n, keys, keyIDs); err != nil {
				return nil, errorf("witness %q: %s", f[1], err)
			}
			u, err := policyURL(f, 3)
			if err != nil {
				return nil, errorf("witness %q: %s", f[1], err)
			}
			defined[f[1]] = n
			p.Witnesses = append(p.Witnesses, PolicyWitness{Name: f[1], VKey: f[2], Verifier: v, URL: u})

		case "group":
			if len(f) < 4 {
				return nil, errorf("want \"group NAME K|any|all MEMBER...\" with at least one member")
			}
			name, k, members := f[1], f[2], f[3:]
			if err := checkNewName(name, defined); err != nil {
				return nil, errorf("group %s", err)
			}
			for j, m := range members {
				if _, ok := defined[m]; !ok {
					return nil, errorf("group %q: member %q is not a witness or group defined on an earlier line", name, m)
				}
				if slices.Contains(members[:j], m) {
					return nil, errorf("group %q: member %q is listed twice", name, m)
				}
			}
			var t int
			switch k {
			case "any":
				t = 1
			case "all":
				t = len(members)
			default:
				v, err := parseDecimal([]byte(k))
				if err != nil || v < 1 || v > uint64(len(members)) {
					return nil, errorf("group %q: threshold %q must be \"any\", \"all\" or a number from 1 to %d, the number of members", name, k, len(members))
				}
				t = int(v)
			}
			defined[name] = n
			p.Groups = append(p.Groups, PolicyGroup{Name: name, Threshold: t, Members: slices.Clone(members)})

		case "quorum":
			if len(f) != 2 {
				return nil, errorf("want \"quorum NAME\" or \"quorum none\", got %d fields", len(f))
			}
			if quorumLine != 0 {
				return nil, errorf("a second quorum line (the first is line %d)", quorumLine)
			}
			if _, ok := defined[f[1]]; !ok && f[1] != "none" {
				return nil, errorf("quorum %q is not a witness or group defined on an earlier line", f[1])
			}
			quorumLine = n
			p.Quorum = f[1]

		default:
			return nil, errorf("unknown keyword %q: want log, witness, group or quorum", f[0])
		}
	}
	if len(p.Logs) == 0 {
		return nil, errors.New("checkpoint: policy has no log line: it must name the log's key")
	}
	if quorumLine == 0 {
		return nil, errors.New("checkpoint: policy has no quorum line: say \"quorum none\" if no witness is needed")
	}
	return p, nil
}

// trimPrefix drops the "checkpoint: " of an error from this package, to nest
// its message in another.
func trimPrefix(err error) string {
	s, _ := strings.CutPrefix(err.Error(), "checkpoint: ")
	return s
}

// checkNewName checks a witness or group name being defined.
func checkNewName(name string, defined map[string]int) error {
	if name == "none" {
		return errors.New("name \"none\" is reserved for \"quorum none\"")
	}
	if !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return fmt.Errorf("name %q is not valid", name)
	}
	if line, ok := defined[name]; ok {
		return fmt.Errorf("name %q is already defined on line %d", name, line)
	}
	return nil
}

// checkKey refuses a key whose public key, or whose name and key hash, an
// earlier line already used. The same public key under two names (or for a
// log and a witness) would make one signer count twice; two keys with one
// key ID would make signature lines ambiguous.
func checkKey(vkey string, typ byte, line int, keys, keyIDs map[string]int) error {
	k, err := parseVerifierKey(vkey, typ, "")
	if err != nil {
		return err // unreachable: the caller's NewXVerifier accepted it
	}
	if l, ok := keys[string(k.key)]; ok {
		return fmt.Errorf("key is the same public key as the one on line %d", l)
	}
	id := fmt.Sprintf("%s+%08x", k.name, k.hash)
	if l, ok := keyIDs[id]; ok {
		return fmt.Errorf("key ID %s is the same as the one on line %d", id, l)
	}
	keys[string(k.key)] = line
	keyIDs[id] = line
	return nil
}

// policyURL returns f[i] checked as an absolute http or https URL, or "".
func policyURL(f []string, i int) (string, error) {
	if len(f) <= i {
		return "", nil
	}
	u, err := url.Parse(f[i])
	if err != nil {
		return "", fmt.Errorf("URL %q: %v", f[i], err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("URL %q is not an absolute http or https URL", f[i])
	}
	return f[i], nil
}

// Origin returns the origin of the policy's log: the name of its log keys.
func (p *Policy) Origin() string {
	if len(p.Logs) == 0 {
		return ""
	}
	return p.Logs[0].Origin
}

// LogVerifiers returns the verifiers of the policy's log keys, in file order.
func (p *Policy) LogVerifiers() []note.Verifier {
	vs := make([]note.Verifier, len(p.Logs))
	for i, l := range p.Logs {
		vs[i] = l.Verifier
	}
	return vs
}

// Satisfied reports whether the witnesses named in cosigned (those mapped to
// true) meet the policy's quorum. A group is met when at least Threshold of
// its members are: a witness member by being in cosigned, a group member by
// being met itself. "quorum none" is always met. Names in cosigned that are
// not witnesses of the policy count for nothing.
//
// A Policy built by hand rather than by ParsePolicy may name members or a
// quorum it does not define: then Satisfied reports false, and
// DisjointQuorums true.
func (p *Policy) Satisfied(cosigned map[string]bool) bool {
	q, err := p.compile()
	if err != nil {
		return false
	}
	var set witnessSet
	for i, w := range q.witnesses {
		if cosigned[w] {
			set.add(i)
		}
	}
	return q.satisfied(set)
}

// QuorumCosignedBy returns the time by which a quorum of witnesses had
// cosigned: the earliest t such that the witnesses whose cosignatures (as
// Verify returns them: policy name, timestamp) are dated at or before t meet
// the quorum. A checkpoint, and every entry it covers, existed by then. One
// witness whose clock is wrong cannot move it earlier, unless that witness
// alone is a quorum. ok is false when the cosignatures do not meet the
// quorum, and for "quorum none", which vouches for no time.
func (p *Policy) QuorumCosignedBy(cosigners map[string]time.Time) (t time.Time, ok bool) {
	if p.Quorum == "none" {
		return time.Time{}, false
	}
	names := slices.SortedFunc(maps.Keys(cosigners), func(a, b string) int {
		return cosigners[a].Compare(cosigners[b])
	})
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
		if p.Satisfied(set) {
			return cosigners[n], true
		}
	}
	return time.Time{}, false
}

// Verify checks a signed checkpoint against the policy: it must be signed by
// one of the log's keys (Open), and cosigned by a quorum of witnesses
// (Cosignatures, Satisfied). It returns the body and, for each witness that
// cosigned, its policy name and the timestamp of its cosignature.
//
// Errors wrap ErrMalformed, ErrUnverified (including an invalid cosignature
// by one of the policy's witnesses) or ErrQuorum.
func (p *Policy) Verify(signed []byte) (Checkpoint, map[string]time.Time, error) {
	c, _, err := Open(signed, p.LogVerifiers()...)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	vs := make([]note.Verifier, len(p.Witnesses))
	byID := make(map[string]string, len(p.Witnesses))
	for i, w := range p.Witnesses {
		vs[i] = w.Verifier
		byID[KeyID(w.Verifier)] = w.Name
	}
	cos, err := Cosignatures(signed, vs...)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	names := make(map[string]time.Time, len(cos))
	cosigned := make(map[string]bool, len(cos))
	for id, t := range cos {
		names[byID[id]] = t
		cosigned[byID[id]] = true
	}
	if !p.Satisfied(cosigned) {
		got := slices.Sorted(maps.Keys(names))
		return Checkpoint{}, nil, &sentinelError{ErrQuorum, fmt.Sprintf(
			"checkpoint %d for origin %q: quorum %q not met: cosigned by %d witnesses %q", c.Size, c.Origin, p.Quorum, len(got), got)}
	}
	return c, names, nil
}

// maxBruteForceWitnesses bounds the exhaustive search of DisjointQuorums: it
// tries 2^n splits of n witnesses.
const maxBruteForceWitnesses = 20

// DisjointQuorums reports whether two disjoint sets of witnesses could each
// meet the quorum: if so, a log that shows two forks to two halves of the
// witnesses can get both cosigned. For a single k-of-n group that is 2k <= n.
// "quorum none" gives true (no witness at all is a quorum).
//
// The answer is exact when each witness and group reaches the quorum by one
// path only (no member shared between groups), computed group by group; and
// when groups share members, by trying every split of the quorum's witnesses
// in two, for up to 20 of them. Past that it answers true: it could not show
// that quorums must overlap, so the caller should warn.
func (p *Policy) DisjointQuorums() bool {
	q, err := p.compile()
	if err != nil {
		return true
	}
	return q.disjoint()
}

// A quorum is a policy's quorum in a form fast to evaluate: witnesses are
// numbered, groups refer to members by index, and each group comes after
// its members.
type quorum struct {
	witnesses []string // index: witness number
	groups    []qgroup // in definition order
	root      qnode
	none      bool // "quorum none"
}

// A qnode is a witness (group < 0) or a group.
type qnode struct {
	witness, group int
}

type qgroup struct {
	threshold int
	members   []qnode
}

// A witnessSet is a set of witness numbers, a bitmap.
type witnessSet struct{ bits []uint64 }

func (s *witnessSet) add(i int) {
	for len(s.bits) <= i/64 {
		s.bits = append(s.bits, 0)
	}
	s.bits[i/64] |= 1 << (i % 64)
}

func (s witnessSet) has(i int) bool {
	return i/64 < len(s.bits) && s.bits[i/64]&(1<<(i%64)) != 0
}

// compile checks the references of p, which ParsePolicy guarantees but a
// Policy built by hand may break, and returns its quorum.
func (p *Policy) compile() (*quorum, error) {
	q := &quorum{}
	nodes := make(map[string]qnode)
	for i, w := range p.Witnesses {
		if _, ok := nodes[w.Name]; ok {
			return nil, fmt.Errorf("checkpoint: policy defines %q twice", w.Name)
		}
		nodes[w.Name] = qnode{witness: i, group: -1}
		q.witnesses = append(q.witnesses, w.Name)
	}
	for gi, g := range p.Groups {
		if _, ok := nodes[g.Name]; ok {
			return nil, fmt.Errorf("checkpoint: policy defines %q twice", g.Name)
		}
		if g.Threshold < 1 || g.Threshold > len(g.Members) {
			return nil, fmt.Errorf("checkpoint: policy group %q has threshold %d for %d members", g.Name, g.Threshold, len(g.Members))
		}
		qg := qgroup{threshold: g.Threshold}
		for _, m := range g.Members {
			n, ok := nodes[m]
			if !ok {
				return nil, fmt.Errorf("checkpoint: policy group %q has member %q, not defined before it", g.Name, m)
			}
			qg.members = append(qg.members, n)
		}
		nodes[g.Name] = qnode{witness: -1, group: gi}
		q.groups = append(q.groups, qg)
	}
	if p.Quorum == "none" {
		q.none = true
		return q, nil
	}
	root, ok := nodes[p.Quorum]
	if !ok {
		return nil, fmt.Errorf("checkpoint: policy quorum %q is not defined", p.Quorum)
	}
	q.root = root
	return q, nil
}

func (q *quorum) satisfied(set witnessSet) bool {
	if q.none {
		return true
	}
	met := make([]bool, len(q.groups))
	isMet := func(n qnode) bool {
		if n.group < 0 {
			return set.has(n.witness)
		}
		return met[n.group]
	}
	for i, g := range q.groups {
		count := 0
		for _, m := range g.members {
			if isMet(m) {
				count++
			}
		}
		met[i] = count >= g.threshold
	}
	return isMet(q.root)
}

func (q *quorum) disjoint() bool {
	if q.none {
		return true
	}
	// Which witnesses and groups the quorum reaches, and whether any by two
	// paths.
	reachedW := make(map[int]bool)
	reachedG := make(map[int]bool)
	shared := false
	var walk func(n qnode)
	walk = func(n qnode) {
		if n.group < 0 {
			shared = shared || reachedW[n.witness]
			reachedW[n.witness] = true
			return
		}
		if reachedG[n.group] {
			shared = true
			return
		}
		reachedG[n.group] = true
		for _, m := range q.groups[n.group].members {
			walk(m)
		}
	}
	walk(q.root)
	if !shared {
		return q.splittable(q.root)
	}
	if len(reachedW) > maxBruteForceWitnesses {
		return true
	}
	ws := make([]int, 0, len(reachedW))
	for w := range reachedW {
		ws = append(ws, w)
	}
	slices.Sort(ws)
	// By monotonicity, two disjoint quorums A and B exist if and only if
	// some A and its complement are both quorums (the complement contains
	// B). Fixing the last witness in the complement halves the work.
	for mask := uint64(0); mask < 1<<(len(ws)-1); mask++ {
		var a, b witnessSet
		for i, w := range ws {
			if mask&(1<<i) != 0 {
				a.add(w)
			} else {
				b.add(w)
			}
		}
		if q.satisfied(a) && q.satisfied(b) {
			return true
		}
	}
	return false
}

// splittable reports whether the witnesses under n, a tree, can be split in
// two sets that each meet n. A witness cannot be. A group of threshold k can
// be when, with s of its members splittable, 2*max(0, k-s) <= m-s for m
// members: each splittable member counts for both sets, and each of the
// others (non-empty, so met by whichever set takes all its witnesses) for
// one.
func (q *quorum) splittable(n qnode) bool {
	if n.group < 0 {
		return false
	}
	g := q.groups[n.group]
	s := 0
	for _, m := range g.members {
		if q.splittable(m) {
			s++
		}
	}
	need := max(0, g.threshold-s)
	return 2*need <= len(g.members)-s
}
