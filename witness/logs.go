package witness

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tidemark/tidemark/checkpoint"
	"golang.org/x/mod/sumdb/note"
)

// MaxListSize bounds a --logs or --follow file: the witness network's
// largest profile lists 40,000 logs at about 200 bytes each.
const MaxListSize = 64 << 20

// A ListedLog is one entry of a witness-network log list (logs/v0).
type ListedLog struct {
	VKey     string
	Verifier note.Verifier // from checkpoint.NewLogVerifier
	Origin   string        // the "origin" line, or the key's name
	QPD      uint64        // add-checkpoint requests the log may make per day
	Contact  string        // "" when not given
}

// ParseLogList parses a witness-network log list, strictly:
//
//	logs/v0
//	vkey <vkey>
//	origin <origin>       (optional; defaults to the key's name)
//	qpd <n>               (required, at least 1)
//	contact <text>        (optional)
//
// Blank lines and lines starting with "#" are ignored; the header comes
// first; each log starts with a vkey line and its other lines follow in that
// order, each at most once. A vkey may appear only once; several keys may
// name one origin (a key rotation). Errors name the line.
func ParseLogList(b []byte) ([]ListedLog, error) {
	if len(b) > MaxListSize {
		return nil, fmt.Errorf("witness: log list is %d bytes, more than the limit of %d", len(b), MaxListSize)
	}
	if !utf8.Valid(b) {
		return nil, errors.New("witness: log list is not valid UTF-8")
	}
	var (
		logs   []ListedLog
		header bool
		stage  int                // of the current log: 1 vkey, 2 origin, 3 qpd, 4 contact
		start  int                // the line of the current log's vkey
		vkeys  = map[string]int{} // vkey: its line
	)
	order := map[string]int{"vkey": 1, "origin": 2, "qpd": 3, "contact": 4}
	// finish checks the current log once its last line is read.
	finish := func() error {
		if len(logs) > 0 && stage < 3 {
			return fmt.Errorf("witness: log list line %d: the log of this vkey has no qpd line (after the vkey and an optional origin line, \"qpd N\": the requests a day it may make)", start)
		}
		return nil
	}
	text, _ := strings.CutSuffix(string(b), "\n")
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		errorf := func(format string, args ...any) error {
			return fmt.Errorf("witness: log list line %d: %s", n, fmt.Sprintf(format, args...))
		}
		if strings.ContainsFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, errorf("control character (tab, carriage return...): lines are \"keyword value\" separated by one space")
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if !header {
			if line != "logs/v0" {
				return nil, errorf("want the header \"logs/v0\", got %q", line)
			}
			header = true
			continue
		}
		kw, val, ok := strings.Cut(line, " ")
		if !ok || val == "" || strings.TrimSpace(val) != val {
			return nil, errorf("want \"keyword value\" with one space and no trailing spaces, got %q", line)
		}
		st, known := order[kw]
		if !known {
			return nil, errorf("unknown keyword %q: want vkey, origin, qpd or contact", kw)
		}
		if st == 1 {
			if err := finish(); err != nil {
				return nil, err
			}
			v, err := checkpoint.NewLogVerifier(val)
			if err != nil {
				return nil, errorf("%v", err)
			}
			if prev, dup := vkeys[val]; dup {
				return nil, errorf("vkey already listed on line %d", prev)
			}
			vkeys[val] = n
			logs = append(logs, ListedLog{VKey: val, Verifier: v, Origin: v.Name()})
			stage, start = 1, n
			continue
		}
		if len(logs) == 0 {
			return nil, errorf("%q before the first vkey line", kw)
		}
		if st <= stage {
			return nil, errorf("%q out of order or repeated: a log's lines are vkey, origin, qpd, contact", kw)
		}
		if st > 3 && stage < 3 {
			return nil, errorf("contact before qpd")
		}
		stage = st
		l := &logs[len(logs)-1]
		switch kw {
		case "origin":
			if strings.ContainsFunc(val, func(r rune) bool { return r == ' ' }) {
				return nil, errorf("origin %q contains a space", val)
			}
			l.Origin = val
		case "qpd":
			q, err := parseQPD(val)
			if err != nil {
				return nil, errorf("qpd: %v", err)
			}
			l.QPD = q
		case "contact":
			l.Contact = val
		}
	}
	if !header {
		return nil, errors.New("witness: log list has no \"logs/v0\" header")
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return logs, nil
}

func parseQPD(s string) (uint64, error) {
	var q uint64
	if s == "" || len(s) > 12 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not a positive decimal without leading zeros", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a positive decimal", s)
		}
		q = q*10 + uint64(c-'0')
	}
	if q == 0 {
		return 0, errors.New("0 requests a day: remove the log instead")
	}
	return q, nil
}

// A FollowedLog is a "log VKEY URL" line of a --follow file: a log the
// witness polls itself.
type FollowedLog struct {
	VKey     string
	Verifier note.Verifier
	Origin   string // the key's name
	URL      string // the log's tlog-tiles prefix (…/checkpoint, …/tile/…)
}

// ParseFollow parses a --follow file: "log VKEY URL" lines of the tlog-policy
// grammar, "#" comments and blank lines. Witness, group and quorum lines are
// refused rather than ignored, so that a policy file given by mistake does
// not half work. Several lines may share an origin (a key rotation) only with
// the same URL.
func ParseFollow(b []byte) ([]FollowedLog, error) {
	if len(b) > MaxListSize {
		return nil, fmt.Errorf("witness: follow file is %d bytes, more than the limit of %d", len(b), MaxListSize)
	}
	if !utf8.Valid(b) {
		return nil, errors.New("witness: follow file is not valid UTF-8")
	}
	var logs []FollowedLog
	seen := map[string]int{}
	text, _ := strings.CutSuffix(string(b), "\n")
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		errorf := func(format string, args ...any) error {
			return fmt.Errorf("witness: follow file line %d: %s", n, fmt.Sprintf(format, args...))
		}
		if strings.ContainsFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return nil, errorf("control character (carriage return?)")
		}
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] != "log" || len(f) != 3 {
			return nil, errorf("want \"log VKEY URL\"")
		}
		v, err := checkpoint.NewLogVerifier(f[1])
		if err != nil {
			return nil, errorf("%v", err)
		}
		if prev, dup := seen[f[1]]; dup {
			return nil, errorf("key already listed on line %d", prev)
		}
		seen[f[1]] = n
		u, err := url.Parse(f[2])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, errorf("URL %q: want an http or https URL without query or fragment", f[2])
		}
		for _, l := range logs {
			if l.Origin == v.Name() && l.URL != f[2] {
				return nil, errorf("origin %q already follows %s: one URL per log", v.Name(), l.URL)
			}
		}
		logs = append(logs, FollowedLog{VKey: f[1], Verifier: v, Origin: v.Name(), URL: f[2]})
	}
	return logs, nil
}

// A knownLog is everything the witness knows about one origin from its
// lists. Immutable once built.
type knownLog struct {
	origin    string
	vkeys     []string
	verifiers []note.Verifier
	keys      []*logKey // verifiers[i]'s key, for the fast path (verify.go); nil: none
	qpd       uint64    // the largest qpd listed for the origin; 0 for a log only followed
	contacts  []string
	url       string // from --follow, or ""
}

// logTable is the set of logs the witness accepts, by origin. Immutable:
// a reload builds a new one and swaps it in.
type logTable struct {
	byOrigin map[string]*knownLog
	byHash   map[string]string // hex SHA-256 of origin: origin
}

func buildTable(listed []ListedLog, followed []FollowedLog) *logTable {
	t := &logTable{byOrigin: map[string]*knownLog{}, byHash: map[string]string{}}
	get := func(origin string) *knownLog {
		l, ok := t.byOrigin[origin]
		if !ok {
			l = &knownLog{origin: origin}
			t.byOrigin[origin] = l
			t.byHash[originHash(origin)] = origin
		}
		return l
	}
	addKey := func(l *knownLog, vkey string, v note.Verifier) {
		if !slices.Contains(l.vkeys, vkey) {
			l.vkeys = append(l.vkeys, vkey)
			l.verifiers = append(l.verifiers, v)
			l.keys = append(l.keys, newLogKey(vkey))
		}
	}
	for _, e := range listed {
		l := get(e.Origin)
		addKey(l, e.VKey, e.Verifier)
		l.qpd = max(l.qpd, e.QPD)
		if e.Contact != "" && !slices.Contains(l.contacts, e.Contact) {
			l.contacts = append(l.contacts, e.Contact)
		}
	}
	for _, e := range followed {
		l := get(e.Origin)
		addKey(l, e.VKey, e.Verifier)
		l.url = e.URL
	}
	return t
}
