package log

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera"
)

// checkPolicyKeys refuses a policy that does not name the log: its origin
// must be the keys' origin and at least one of the log's keys must be one of
// its log lines, or no verifier holding the policy could check a checkpoint.
// It returns the log's keys that the policy does not list (they sign, but
// verifiers ignore their signatures).
func checkPolicyKeys(p *checkpoint.Policy, keys Keys) (unlisted []string, err error) {
	if f := keys.fresh; f != nil {
		// Refused before the key is written: the vkey in this message would
		// never be the log's.
		return nil, fmt.Errorf("there is no log key in %s yet, and a key made now cannot be in the policy: make the key first "+
			"(mkdir -p %[1]s && tidemark keygen %[2]s --out %[1]s/log), add the line \"log VKEY URL\" with the vkey it prints to the policy, then start the log",
			f.dir, p.Origin())
	}
	origin := keys.Signers[0].Name()
	if p.Origin() != origin {
		return nil, fmt.Errorf("the policy is for origin %q but this log's keys are for %q: give the policy of this log", p.Origin(), origin)
	}
	listed := make([]string, len(p.Logs))
	for i, l := range p.Logs {
		listed[i] = l.VKey
	}
	matched := false
	for _, k := range keys.VKeys {
		if slices.Contains(listed, k) {
			matched = true
		} else {
			unlisted = append(unlisted, k)
		}
	}
	if !matched {
		return nil, fmt.Errorf("no log line of the policy has this log's key (%s; the policy lists %s): add a line \"log %s\" to the policy, or sign with a key it lists",
			strings.Join(keys.VKeys, ", "), strings.Join(listed, ", "), keys.VKeys[0])
	}
	return unlisted, nil
}

// implicitPolicy is the policy of a log started without one: its own keys
// and no witness. Its receipts prove inclusion under the log's signature
// alone.
func implicitPolicy(keys Keys) ([]byte, *checkpoint.Policy, error) {
	var b strings.Builder
	b.WriteString("# No --policy was given: this log's keys, and no witness.\n")
	for _, k := range keys.VKeys {
		b.WriteString("log " + k + "\n")
	}
	b.WriteString("quorum none\n")
	p, err := checkpoint.ParsePolicy([]byte(b.String()))
	if err != nil {
		return nil, nil, fmt.Errorf("couldn't make a policy of the log's own keys: %w", err)
	}
	return []byte(b.String()), p, nil
}

// witnessGroup builds Tessera's witness group from a policy that
// checkpoint.ParsePolicy accepted, so that the log asks the witnesses that
// every verifier of the policy counts, with the same thresholds. It does not
// use Tessera's own policy parser, which is more lenient (see
// FIELD-NOTES.md): every vkey given to tessera.NewWitness here has passed
// ParsePolicy's strict checks. It also returns, for each witness's
// add-checkpoint URL (as Tessera will request it), the witness's policy
// name. Quorum "none" gives a group with no witness, which Tessera treats as
// no witnessing.
func witnessGroup(p *checkpoint.Policy) (tessera.WitnessGroup, map[string]string, error) {
	if p.Quorum == "none" {
		return tessera.NewWitnessGroup(0), nil, nil
	}
	nodes := make(map[string]any) // a tessera.Witness or tessera.WitnessGroup

	names := make(map[string]string)
	for _, w := range p.Witnesses {
		if w.URL == "" {
			return tessera.WitnessGroup{}, nil, fmt.Errorf("policy witness %q has no URL: the log must reach every witness of its policy (\"witness NAME VKEY URL\")", w.Name)
		}
		u, err := url.Parse(w.URL)
		if err != nil {
			return tessera.WitnessGroup{}, nil, fmt.Errorf("policy witness %q: URL %q: %w", w.Name, w.URL, err)
		}
		tw, err := tessera.NewWitness(w.VKey, u)
		if err != nil {
			return tessera.WitnessGroup{}, nil, fmt.Errorf("policy witness %q: %w", w.Name, err)
		}
		if other, ok := names[tw.URL]; ok {
			return tessera.WitnessGroup{}, nil, fmt.Errorf("policy witnesses %q and %q have the same URL %s: one server would count as two witnesses", other, w.Name, w.URL)
		}
		names[tw.URL] = w.Name
		nodes[w.Name] = tw
	}
	for _, g := range p.Groups {
		// The children's type is unexported in Tessera: take a slice of it
		// from a WitnessGroup.
		children := tessera.WitnessGroup{}.Components[:0:0]
		for _, m := range g.Members {
			switch n := nodes[m].(type) {
			case tessera.Witness:
				children = append(children, n)
			case tessera.WitnessGroup:
				children = append(children, n)
			default:
				return tessera.WitnessGroup{}, nil, fmt.Errorf("policy group %q: member %q is not defined", g.Name, m) // unreachable after ParsePolicy
			}
		}
		nodes[g.Name] = tessera.NewWitnessGroup(g.Threshold, children...)
	}
	var q tessera.WitnessGroup
	switch n := nodes[p.Quorum].(type) {
	case tessera.WitnessGroup:
		q = n
	case tessera.Witness:
		q = tessera.NewWitnessGroup(1, n)
	default:
		return tessera.WitnessGroup{}, nil, fmt.Errorf("policy quorum %q is not defined", p.Quorum) // unreachable after ParsePolicy
	}
	// Only the witnesses the quorum reaches are asked.
	asked := q.Endpoints()
	maps.DeleteFunc(names, func(u, _ string) bool { _, ok := asked[u]; return !ok })
	return q, names, nil
}

// awaitPeriod is how often the awaiter reads the published checkpoint: a
// fraction of the checkpoint interval, so that a waiting request hears of a
// witnessed checkpoint soon after it is published.
const awaitPeriod = 50 * time.Millisecond

// setupWitnessing takes the policy (or makes the implicit one), checks it
// against the log's keys, and returns the witness group for Tessera (nil
// when no witness is asked) and the HTTP client Tessera's witness requests
// go through, which observes them.
func (s *Server) setupWitnessing() (*tessera.WitnessGroup, *http.Client, error) {
	cfg := s.cfg
	if cfg.Policy == nil {
		text, p, err := implicitPolicy(cfg.Keys)
		if err != nil {
			return nil, nil, err
		}
		s.policy, s.policyText = p, text
	} else {
		if len(cfg.PolicyText) == 0 {
			return nil, nil, errors.New("a policy needs its text too (Config.PolicyText), to serve at /v1/policy")
		}
		unlisted, err := checkPolicyKeys(cfg.Policy, cfg.Keys)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range unlisted {
			s.log.Warn("this log signs with a key its policy does not list: verifiers ignore its signatures", "vkey", k)
		}
		s.policy, s.policyText = cfg.Policy, cfg.PolicyText
		switch {
		case cfg.Policy.Quorum == "none":
			s.log.Warn("the policy's quorum is \"none\": no witness cosigns this log's checkpoints, so nothing stops it from showing different histories to different people")
		case cfg.Policy.DisjointQuorums():
			s.log.Warn("two disjoint sets of witnesses can each meet the policy's quorum (k of n with 2k <= n): a log could get two forks of its history cosigned. Raise the threshold above half the witnesses",
				"quorum", cfg.Policy.Quorum)
		}
	}
	var err error
	if s.witnessMetrics, err = newWitnessMetrics(s, cfg.Registry); err != nil {
		return nil, nil, err
	}
	group, names, err := witnessGroup(s.policy)
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 {
		return nil, nil, nil
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.WitnessRootCAs != nil {
		transport.TLSClientConfig = &tls.Config{RootCAs: cfg.WitnessRootCAs, MinVersion: tls.VersionTLS12}
	}
	obs, err := newWitnessObserver(transport, names, s.policy, cfg.FailOpen, s.log, cfg.Registry)
	if err != nil {
		return nil, nil, err
	}
	if cfg.MySQL != "" {
		// Tessera asks the witnesses under the tree-state row lock: keep
		// the ones that do not answer out of it (witnessbreaker.go).
		obs.breaker = newWitnessBreaker(transport, cfg.WitnessTimeout, s.log)
		obs.ctx = s.ctx
	}
	mode := "fail-closed: a checkpoint without the quorum is not published"
	if cfg.FailOpen {
		mode = "fail-open: a checkpoint without the quorum is published anyway; receipts still wait for the quorum"
	}
	s.roundEnded = obs.roundEnded
	s.log.Info("witnessing", "quorum", s.policy.Quorum, "witnesses", len(names), "mode", mode, "timeout", cfg.WitnessTimeout)
	// No client timeout: Tessera bounds each round with the witness timeout.
	return &group, &http.Client{Transport: obs}, nil
}
