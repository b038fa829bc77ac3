package checkpoint

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// testPolicyKeys are fixed keys for policy texts: a log key and six
// witness keys, generated once per test binary.
type testPolicyKeys struct {
	logS    note.Signer
	logVKey string
	wS      []note.Signer
	wVKey   []string
}

var policyKeys *testPolicyKeys

func getPolicyKeys(t testing.TB) *testPolicyKeys {
	t.Helper()
	if policyKeys != nil {
		return policyKeys
	}
	k := &testPolicyKeys{}
	k.logS, _, k.logVKey = newTestLogKey(t, "audit.example.com/prod")
	for i := range 6 {
		s, _, vkey := newTestWitnessKey(t, fmt.Sprintf("witness%d.example", i+1))
		k.wS = append(k.wS, s)
		k.wVKey = append(k.wVKey, vkey)
	}
	policyKeys = k
	return k
}

// policyText replaces LOG with the log vkey and W1..W6 with witness vkeys.
// Keys from elsewhere must go in after it: their base64 may hold "W1".
func policyText(t testing.TB, s string) string {
	k := getPolicyKeys(t)
	r := []string{"LOG", k.logVKey}
	for i := len(k.wVKey) - 1; i >= 0; i-- { // W6 before W1, a prefix of nothing else
		r = append(r, fmt.Sprintf("W%d", i+1), k.wVKey[i])
	}
	return strings.NewReplacer(r...).Replace(s)
}

func TestParsePolicy(t *testing.T) {
	_, _, rotated := newTestLogKey(t, "audit.example.com/prod")
	text := policyText(t, `# Tidemark production
log LOG https://audit.example.com/prod
log @rotated@

witness w1 W1 https://w1.example/
witness	w2	W2   # tabs, and no URL
witness w3 W3 http://127.0.0.1:8081
group g 2 w1 w2 w3
group any-of any g w3
group all-of all w1 any-of
quorum all-of`) // no final newline
	text = strings.Replace(text, "@rotated@", rotated, 1) // after policyText, which would rewrite "W1" in the key
	p, err := ParsePolicy([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if p.Origin() != "audit.example.com/prod" || len(p.Logs) != 2 || len(p.LogVerifiers()) != 2 {
		t.Errorf("logs %+v", p.Logs)
	}
	if p.Logs[0].URL != "https://audit.example.com/prod" || p.Logs[1].URL != "" || p.Logs[1].VKey != rotated {
		t.Errorf("logs %+v", p.Logs)
	}
	k := getPolicyKeys(t)
	wantW := []PolicyWitness{
		{Name: "w1", VKey: k.wVKey[0], URL: "https://w1.example/"},
		{Name: "w2", VKey: k.wVKey[1]},
		{Name: "w3", VKey: k.wVKey[2], URL: "http://127.0.0.1:8081"},
	}
	if len(p.Witnesses) != len(wantW) {
		t.Fatalf("witnesses %+v", p.Witnesses)
	}
	for i, w := range p.Witnesses {
		if w.Name != wantW[i].Name || w.VKey != wantW[i].VKey || w.URL != wantW[i].URL || w.Verifier == nil {
			t.Errorf("witness %d = %+v, want %+v", i, w, wantW[i])
		}
	}
	wantG := []PolicyGroup{
		{"g", 2, []string{"w1", "w2", "w3"}},
		{"any-of", 1, []string{"g", "w3"}},
		{"all-of", 2, []string{"w1", "any-of"}},
	}
	for i, g := range p.Groups {
		if g.Name != wantG[i].Name || g.Threshold != wantG[i].Threshold || !slices.Equal(g.Members, wantG[i].Members) {
			t.Errorf("group %d = %+v, want %+v", i, g, wantG[i])
		}
	}
	if p.Quorum != "all-of" {
		t.Errorf("quorum %q", p.Quorum)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	_, _, otherLog := newTestLogKey(t, "other.example.com/log")
	k := getPolicyKeys(t)
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"empty", "", "no log line"},
		{"no log", "witness w1 W1\nquorum w1\n", "no log line"},
		{"no quorum", "log LOG\nwitness w1 W1\n", "no quorum line"},
		{"two quorums", "log LOG\nwitness w1 W1\nquorum w1\nquorum none\n", "line 4: a second quorum line (the first is line 3)"},
		{"quorum undefined", "log LOG\nquorum w1\n", "line 2: quorum \"w1\" is not a witness or group defined on an earlier line"},
		{"quorum before definition", "log LOG\nquorum w1\nwitness w1 W1\n", "line 2: quorum \"w1\""},
		{"quorum extra field", "log LOG\nwitness w1 W1\nquorum w1 w1\n", "line 3: want \"quorum NAME\""},
		{"unknown keyword", "log LOG\nwitnesses w1 W1\nquorum none\n", "line 2: unknown keyword \"witnesses\""},
		{"uppercase keyword", "LOG LOG\nquorum none\n", "line 1: unknown keyword"},
		{"log key of witness type", "log W1\nquorum none\n", "line 1: log key: key type is 0x04, want 0x01"},
		{"witness key of log type", "log LOG\nwitness w1 LOG\nquorum none\n", "line 2: witness \"w1\": witness key: key type is 0x01, want 0x04"},
		{"bad witness key", "log LOG\nwitness w1 @badkey@\nquorum none\n", "line 2: witness \"w1\": witness key"},
		{"two origins", "log LOG\nlog @other@\nquorum none\n", "line 2: log key for origin \"other.example.com/log\", but line 1 has a key for \"audit.example.com/prod\": a policy is for one log"},
		{"duplicate log key", "log LOG\nlog LOG https://x.example\nquorum none\n", "line 2: key is the same public key as the one on line 1"},
		{"duplicate witness key", "log LOG\nwitness w1 W1\nwitness w2 W1\nquorum none\n", "line 3: witness \"w2\": key is the same public key as the one on line 2"},
		{"duplicate witness name", "log LOG\nwitness w1 W1\nwitness w1 W2\nquorum none\n", "line 3: witness name \"w1\" is already defined on line 2"},
		{"group reuses witness name", "log LOG\nwitness w1 W1\ngroup w1 1 w1\nquorum none\n", "line 3: group name \"w1\" is already defined on line 2"},
		{"witness named none", "log LOG\nwitness none W1\nquorum none\n", "reserved"},
		{"log missing key", "log\nquorum none\n", "line 1: want \"log VKEY [URL]\""},
		{"log extra field", "log LOG https://a.example extra\nquorum none\n", "line 1: want \"log VKEY [URL]\", got 4 fields"},
		{"witness missing key", "log LOG\nwitness w1\nquorum none\n", "line 2: want \"witness NAME VKEY [URL]\""},
		{"witness extra field", "log LOG\nwitness w1 W1 https://a.example x\nquorum none\n", "got 5 fields"},
		{"relative URL", "log LOG\nwitness w1 W1 w1.example\nquorum none\n", "line 2: witness \"w1\": URL \"w1.example\" is not an absolute http or https URL"},
		{"ftp URL", "log LOG ftp://a.example\nquorum none\n", "not an absolute http or https URL"},
		{"group no members", "log LOG\nwitness w1 W1\ngroup g 1\nquorum none\n", "line 3: want \"group NAME K|any|all MEMBER...\""},
		{"group threshold 0", "log LOG\nwitness w1 W1\ngroup g 0 w1\nquorum g\n", "line 3: group \"g\": threshold \"0\" must be \"any\", \"all\" or a number from 1 to 1"},
		{"group threshold too large", "log LOG\nwitness w1 W1\nwitness w2 W2\ngroup g 3 w1 w2\nquorum g\n", "threshold \"3\" must be"},
		{"group threshold leading zero", "log LOG\nwitness w1 W1\nwitness w2 W2\ngroup g 02 w1 w2\nquorum g\n", "threshold \"02\""},
		{"group threshold negative", "log LOG\nwitness w1 W1\ngroup g -1 w1\nquorum g\n", "threshold \"-1\""},
		{"group threshold word", "log LOG\nwitness w1 W1\ngroup g some w1\nquorum g\n", "threshold \"some\""},
		{"group member twice", "log LOG\nwitness w1 W1\nwitness w2 W2\ngroup g 1 w1 w2 w1\nquorum g\n", "line 4: group \"g\": member \"w1\" is listed twice"},
		{"group member undefined", "log LOG\nwitness w1 W1\ngroup g 1 w1 w2\nquorum g\n", "line 3: group \"g\": member \"w2\" is not a witness or group defined on an earlier line"},
		{"group member defined later", "log LOG\ngroup g 1 w1\nwitness w1 W1\nquorum g\n", "line 2: group \"g\": member \"w1\""},
		{"group contains itself", "log LOG\nwitness w1 W1\ngroup g 1 w1 g\nquorum g\n", "member \"g\" is not"},
		{"CRLF", "log LOG\r\nquorum none\r\n", "line 1: carriage return"},
		{"control character", "log LOG\nquorum\x00none\n", "line 2: control character"},
		{"invalid UTF-8", "log LOG\nquorum none # \xff\n", "not valid UTF-8"},
		{"non-breaking space", "log LOG\nquorum\u00a0none\n", "line 2: unknown keyword"},
		{"too large", "log LOG\nquorum none\n" + strings.Repeat("#", MaxPolicySize), "more than the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.NewReplacer("@other@", otherLog, "@badkey@", strings.Replace(k.wVKey[0], "+", "+0", 1)).Replace(policyText(t, tc.text))
			p, err := ParsePolicy([]byte(text))
			if err == nil {
				t.Fatalf("ParsePolicy(%q) = %+v, want an error", text, p)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "checkpoint: ") {
				t.Errorf("error %q, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// testPolicy parses a policy of witnesses w1..wN (N from the text) with the
// given group and quorum lines.
func testPolicy(t testing.TB, n int, lines string) *Policy {
	t.Helper()
	text := "log LOG\n"
	for i := range n {
		text += fmt.Sprintf("witness w%d W%d\n", i+1, i+1)
	}
	p, err := ParsePolicy([]byte(policyText(t, text+lines)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSatisfied(t *testing.T) {
	// Two regions, eu (2 of 3) and us (1 of 2), both needed; or w6 alone
	// and either region.
	p := testPolicy(t, 6, `group eu 2 w1 w2 w3
group us any w4 w5
group both all eu us
group fallback all w6 eu us
group fallback2 2 w6 eu us
group q any both fallback2
quorum q
`)
	for _, tc := range []struct {
		cosigned []string
		want     bool
	}{
		{nil, false},
		{[]string{"w1", "w2"}, false},
		{[]string{"w1", "w2", "w4"}, true},
		{[]string{"w1", "w3", "w5"}, true},
		{[]string{"w1", "w4", "w5"}, false},
		{[]string{"w6", "w4"}, true},
		{[]string{"w6", "w1", "w2"}, true},
		{[]string{"w6", "w1"}, false},
		{[]string{"w1", "w2", "w3", "w4", "w5", "w6"}, true},
		{[]string{"eu", "us"}, false}, // group names count for nothing
		{[]string{"w6", "w4", "stranger"}, true},
	} {
		m := make(map[string]bool)
		for _, w := range tc.cosigned {
			m[w] = true
		}
		if got := p.Satisfied(m); got != tc.want {
			t.Errorf("Satisfied(%v) = %v, want %v", tc.cosigned, got, tc.want)
		}
	}
	if p.Satisfied(map[string]bool{"w6": true, "w4": false, "w5": false}) {
		t.Error("witnesses mapped to false count as cosigned")
	}
	none := testPolicy(t, 1, "quorum none\n")
	if !none.Satisfied(nil) {
		t.Error("quorum none is not satisfied by nobody")
	}
	single := testPolicy(t, 2, "quorum w2\n")
	if single.Satisfied(map[string]bool{"w1": true}) || !single.Satisfied(map[string]bool{"w2": true}) {
		t.Error("a single-witness quorum is wrong")
	}
}

func TestDisjointQuorums(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     int
		lines string
		want  bool
	}{
		{"2 of 3", 3, "group g 2 w1 w2 w3\nquorum g\n", false},
		{"1 of 2", 2, "group g 1 w1 w2\nquorum g\n", true},
		{"2 of 4", 4, "group g 2 w1 w2 w3 w4\nquorum g\n", true},
		{"3 of 4", 4, "group g 3 w1 w2 w3 w4\nquorum g\n", false},
		{"3 of 5", 5, "group g 3 w1 w2 w3 w4 w5\nquorum g\n", false},
		{"3 of 6", 6, "group g 3 w1 w2 w3 w4 w5 w6\nquorum g\n", true},
		{"any of 3", 3, "group g any w1 w2 w3\nquorum g\n", true},
		{"all of 2", 2, "group g all w1 w2\nquorum g\n", false},
		{"1 of 1", 1, "group g 1 w1\nquorum g\n", false},
		{"single witness", 2, "quorum w1\n", false},
		{"none", 2, "quorum none\n", true},
		// all of (1 of 2, 1 of 2): {w1,w3} and {w2,w4}.
		{"all of two anys", 4, "group a any w1 w2\ngroup b any w3 w4\ngroup q all a b\nquorum q\n", true},
		// 2 of (any of 2, w5, w6): {w1, w5} and {w2, w6}.
		{"nested 2 of 3 with a splittable member", 6, "group a any w1 w2\ngroup q 2 a w5 w6\nquorum q\n", true},
		// 2 of (2 of 3, w4, w5): the sub-group cannot split, so one side
		// has at most one member of three.
		{"nested 2 of 3 without", 5, "group a 2 w1 w2 w3\ngroup q 2 a w4 w5\nquorum q\n", false},
		// Shared members, brute force: any of (all w1 w2, all w2 w3):
		// every quorum has w2.
		{"shared member always needed", 3, "group a all w1 w2\ngroup b all w2 w3\ngroup q any a b\nquorum q\n", false},
		// any of (all w1 w2, all w3 w1, all w3 w4): {w1,w2} and {w3,w4}.
		{"shared member avoidable", 4, "group a all w1 w2\ngroup b all w3 w1\ngroup c all w3 w4\ngroup q any a b c\nquorum q\n", true},
		// The same group reached twice.
		{"shared group", 4, "group a any w1 w2\ngroup q 2 a w3 w4\ngroup r all q a\nquorum r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy(t, tc.n, tc.lines)
			if got := p.DisjointQuorums(); got != tc.want {
				t.Errorf("DisjointQuorums = %v, want %v", got, tc.want)
			}
			q, err := p.compile()
			if err != nil {
				t.Fatal(err)
			}
			if got := bruteDisjoint(q, tc.n); got != tc.want && !q.none {
				t.Errorf("brute force = %v, want %v", got, tc.want)
			}
		})
	}
}

// bruteDisjoint tries every pair of disjoint witness sets.
func bruteDisjoint(q *quorum, n int) bool {
	pow3 := 1
	for range n {
		pow3 *= 3
	}
	for x := range pow3 {
		var a, b witnessSet
		for i, y := 0, x; i < n; i, y = i+1, y/3 {
			switch y % 3 {
			case 1:
				a.add(i)
			case 2:
				b.add(i)
			}
		}
		if q.satisfied(a) && q.satisfied(b) {
			return true
		}
	}
	return false
}

// TestDisjointQuorumsRandom checks the tree computation against brute force
// on random nested groups.
func TestDisjointQuorumsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 500 {
		n := 1 + r.IntN(6)
		var lines []string
		var free []string // names not yet in any group: a tree
		for i := range n {
			free = append(free, fmt.Sprintf("w%d", i+1))
		}
		for g := 0; len(free) > 1; g++ {
			r.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
			m := 1 + r.IntN(len(free))
			if g > 3 {
				m = len(free)
			}
			members := free[:m]
			name := fmt.Sprintf("g%d", g)
			lines = append(lines, fmt.Sprintf("group %s %d %s", name, 1+r.IntN(m), strings.Join(members, " ")))
			free = append([]string{name}, free[m:]...)
		}
		text := strings.Join(lines, "\n") + "\nquorum " + free[0] + "\n"
		p := testPolicy(t, n, text)
		q, err := p.compile()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.DisjointQuorums(), bruteDisjoint(q, n); got != want {
			t.Fatalf("iteration %d: DisjointQuorums = %v, brute force %v, for\n%s", iter, got, want, text)
		}
	}
}

func TestDisjointQuorumsBound(t *testing.T) {
	// Shared members and more witnesses than the brute force bound: the
	// conservative answer, true, even though 11 of 21 cannot split.
	n := maxBruteForceWitnesses + 1
	var ws []string
	for i := range n {
		ws = append(ws, fmt.Sprintf("w%d", i+1))
	}
	var text strings.Builder
	text.WriteString("log " + getPolicyKeys(t).logVKey + "\n")
	for i := range n {
		_, _, vkey := newTestWitnessKey(t, fmt.Sprintf("bound%d.example", i))
		fmt.Fprintf(&text, "witness w%d %s\n", i+1, vkey)
	}
	fmt.Fprintf(&text, "group a %d %s\ngroup q all a w1\nquorum q\n", n/2+1, strings.Join(ws, " "))
	p, err := ParsePolicy([]byte(text.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !p.DisjointQuorums() {
		t.Error("DisjointQuorums = false past the brute force bound")
	}
}

func TestPolicyVerify(t *testing.T) {
	k := getPolicyKeys(t)
	p := testPolicy(t, 3, "group g 2 w1 w2 w3\nquorum g\n")
	c := exampleCheckpoint(t)
	stranger, _, _ := newTestWitnessKey(t, "stranger.example") // not in the policy

	signed, err := Sign(c, k.logS, k.wS[0], k.wS[2], stranger)
	if err != nil {
		t.Fatal(err)
	}
	got, names, err := p.Verify(signed)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != c.Size || len(names) != 2 || names["w1"].IsZero() || names["w3"].IsZero() || time.Since(names["w1"]) > time.Minute {
		t.Errorf("Verify = %+v, %v", got, names)
	}

	one, err := Sign(c, k.logS, k.wS[1], stranger)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Verify(one); !errors.Is(err, ErrQuorum) || !strings.Contains(err.Error(), `quorum "g" not met: cosigned by 1 witnesses ["w2"]`) {
		t.Errorf("Verify with one cosignature: %v", err)
	}

	noLog, err := Sign(c, k.wS[0], k.wS[1], k.wS[2])
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Verify(noLog); !errors.Is(err, ErrUnverified) {
		t.Errorf("Verify without the log's signature: %v", err)
	}

	// A checkpoint of another log, signed by its key and cosigned.
	otherS, _, _ := newTestLogKey(t, "other.example.com/log")
	oc := c
	oc.Origin = "other.example.com/log"
	other, err := Sign(oc, otherS, k.wS[0], k.wS[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Verify(other); !errors.Is(err, ErrUnverified) {
		t.Errorf("Verify of another log's checkpoint: %v", err)
	}

	none := testPolicy(t, 0, "quorum none\n")
	if _, names, err := none.Verify(signed); err != nil || len(names) != 0 {
		t.Errorf("Verify with quorum none = %v, %v", names, err)
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"log LOG\nwitness w1 W1 https://w1.example\nwitness w2 W2\nwitness w3 W3\ngroup g 2 w1 w2 w3\nquorum g\n",
		"log LOG\nquorum none\n",
		"# c\nlog LOG # c\n\nwitness w1 W1\ngroup a any w1\ngroup b all a w1\nquorum b",
		"log LOG\nwitness w1 W1\ngroup g 0 w1\nquorum g\n",
	} {
		f.Add(policyText(f, s))
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePolicy([]byte(text))
		if err != nil {
			return
		}
		if len(p.Logs) == 0 || p.Quorum == "" || p.Origin() == "" {
			t.Fatalf("accepted %q: %+v", text, p)
		}
		all := make(map[string]bool)
		for _, w := range p.Witnesses {
			all[w.Name] = true
		}
		if !p.Satisfied(all) {
			t.Fatalf("accepted %q, whose quorum all witnesses together do not meet", text)
		}
		if p.Quorum != "none" && p.Satisfied(nil) {
			t.Fatalf("accepted %q, whose quorum no witness meets", text)
		}
		_ = p.DisjointQuorums()
	})
}

// Issue 9, hole 6: "existed by" is when a quorum had cosigned, so that one
// witness with a wrong clock cannot set it.
func TestQuorumCosignedBy(t *testing.T) {
	p := testPolicy(t, 3, "group g 2 w1 w2 w3\nquorum g\n")
	at := func(s int) time.Time { return time.Unix(1_800_000_000+int64(s), 0).UTC() }
	for _, tc := range []struct {
		name string
		cos  map[string]time.Time
		want time.Time
		ok   bool
	}{
		{"one witness with a clock a year slow does not set it", map[string]time.Time{"w1": at(-365 * 86400), "w2": at(10), "w3": at(12)}, at(10), true},
		{"the second cosignature in time", map[string]time.Time{"w1": at(5), "w2": at(3)}, at(5), true},
		{"below the quorum", map[string]time.Time{"w1": at(5)}, time.Time{}, false},
		{"strangers count for nothing", map[string]time.Time{"w1": at(1), "x": at(0)}, time.Time{}, false},
	} {
		got, ok := p.QuorumCosignedBy(tc.cos)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	none := testPolicy(t, 0, "quorum none\n")
	if _, ok := none.QuorumCosignedBy(map[string]time.Time{"w1": at(0)}); ok {
		t.Errorf("quorum none vouches for a time")
	}
}
