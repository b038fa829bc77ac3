package auditor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
)

// signedCP is a checkpoint signed by the log, verbatim, with where it came
// from.
type signedCP struct {
	raw []byte
	c   checkpoint.Checkpoint
	src string
}

var rangeFactory = &compact.RangeFactory{Hash: hashChildren}

// hashChildren is rfc6962.DefaultHasher.HashChildren, SHA-256 of 0x01, the
// left and the right hash, with one allocation instead of three: a full
// check computes one per leaf. TestHashChildren checks that they agree.
func hashChildren(l, r []byte) []byte {
	var b [1 + 2*checkpoint.HashSize]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], l)
	copy(b[1+checkpoint.HashSize:], r)
	h := sha256.Sum256(b[:])
	return h[:]
}

// Check runs one round of verification and returns what it found; the
// error is only for a cancelled ctx. In order:
//
//  1. fetch the log's checkpoint; it must be signed by one of the policy's
//     log keys (bad-signature) and cosigned by a quorum (quorum);
//  2. freshness: the newest quorum of cosignatures is at most MaxAge old;
//  3. against the last accepted checkpoint in the state: no smaller tree
//     (rollback), the same root at the same size, and otherwise a
//     consistency proof built from the log's tiles (split-view evidence
//     when the log's own tree contradicts the accepted one);
//  4. gossip: the same against each witness's latest cosigned checkpoint;
//  5. with rules, the entries new since the last accepted checkpoint are
//     fetched, checked against the new root and matched;
//  6. a checkpoint that passed 1 and 3 becomes the accepted one, durably.
func (a *Auditor) Check(ctx context.Context) (*Report, error) {
	r := &Report{Origin: a.origin}
	_, err := a.check(ctx, r, true)
	a.countCheck(r)
	if err == nil && r.ExitCode() == ExitVerified {
		// Outages are alerted once while they last, and again next time.
		for k := range a.seen {
			if strings.HasPrefix(k, "unavailable:") {
				delete(a.seen, k)
			}
		}
	}
	return r, err
}

func (a *Auditor) countCheck(r *Report) {
	if a.cfg.Metrics == nil {
		return
	}
	a.cfg.Metrics.checks.WithLabelValues([]string{"verified", "misbehaviour", "unchecked"}[r.ExitCode()]).Inc()
}

// check is Check; it returns the checkpoint that a full check can be run
// against (the log's if witnessed and consistent, else the last accepted),
// or nil.
func (a *Auditor) check(ctx context.Context, r *Report, scanRules bool) (*signedCP, error) {
	signed, err := a.log.checkpoint(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxErr(ctx)
		}
		a.unavailable(r, "fetch the log's checkpoint", err)
		return a.acceptedCP(r), nil
	}
	c, _, err := checkpoint.Open(signed, a.policy.LogVerifiers()...)
	if err != nil {
		if errors.Is(err, checkpoint.ErrUnverified) {
			a.addf(r, KindBadSignature, "badsig:"+string(signed), map[string]any{"checkpoint": string(signed)},
				"the log serves a checkpoint that no log key of the policy validly signed: %v", err)
		} else {
			a.unavailable(r, "read the log's checkpoint", err)
		}
		return a.acceptedCP(r), nil
	}
	r.Checkpoint = c
	if m := a.cfg.Metrics; m != nil {
		m.treeSize.Set(float64(c.Size))
	}
	cur := &signedCP{raw: signed, c: c, src: "the log (" + a.log.base.String() + ")"}
	_, cos, qerr := a.policy.Verify(signed)
	switch {
	case qerr == nil:
		r.Witnessed = true
		a.freshness(r, c, cos)
	case errors.Is(qerr, checkpoint.ErrQuorum):
		a.addf(r, KindQuorum, fmt.Sprintf("quorum:%d:%x", c.Size, c.Hash), nil,
			"the log's checkpoint of size %d is not cosigned by a quorum of the policy's witnesses: %v", c.Size, qerr)
	default:
		a.addf(r, KindBadSignature, "cosig:"+string(signed), map[string]any{"checkpoint": string(signed)},
			"the log's checkpoint of size %d carries an invalid cosignature: %v", c.Size, qerr)
	}

	pb := newProofs(a.log, c.Size)
	consistent := true
	acc := a.acceptedCP(r)
	if acc != nil {
		switch {
		case c.Size < acc.c.Size:
			consistent = false
			a.addf(r, KindRollback, fmt.Sprintf("rollback:%d:%x:%d", acc.c.Size, acc.c.Hash, c.Size),
				map[string]any{"accepted": string(acc.raw), "served": string(signed)},
				"rollback: the log serves a tree of size %d, smaller than the size %d it showed before and the auditor accepted", c.Size, acc.c.Size)
		default:
			ok, err := a.extends(ctx, r, pb, acc, cur)
			if err != nil {
				return nil, err
			}
			consistent = ok
		}
	}
	if err := a.gossip(ctx, r, pb, cur, acc); err != nil {
		return nil, err
	}
	if !r.Witnessed || !consistent {
		return acc, nil
	}

	// Accept. Rules see the entries new since the last accepted checkpoint;
	// they start from the checkpoint accepted when they were first given
	// (a full check covers the history, and moves RulesNext itself).
	st := &a.state.follow
	if acc == nil || len(a.cfg.Rules) == 0 {
		st.RulesNext = max(st.RulesNext, c.Size)
	}
	if scanRules && len(a.cfg.Rules) > 0 && st.RulesNext < c.Size {
		ok, err := a.scanNew(ctx, r, cur, st.RulesNext)
		if err != nil {
			return nil, err
		}
		if ok {
			st.RulesNext = c.Size
		}
	}
	st.Accepted = string(signed)
	if err := a.state.saveFollow(); err != nil {
		a.unavailable(r, "save the state", err)
	}
	if m := a.cfg.Metrics; m != nil {
		m.accepted.Set(float64(c.Size))
	}
	return cur, nil
}

// acceptedCP returns the accepted checkpoint of the state, or nil.
func (a *Auditor) acceptedCP(r *Report) *signedCP {
	raw := a.state.follow.Accepted
	if raw == "" {
		return nil
	}
	c, _, err := checkpoint.Open([]byte(raw), a.policy.LogVerifiers()...)
	if err != nil {
		a.unavailable(r, "verify the accepted checkpoint in the state with the policy's log keys (was a key removed?)", err)
		return nil
	}
	return &signedCP{raw: []byte(raw), c: c, src: "the checkpoint the auditor accepted before"}
}

func (a *Auditor) freshness(r *Report, c checkpoint.Checkpoint, cos map[string]time.Time) {
	if a.policy.Quorum == "none" {
		return
	}
	now := a.cfg.Now()
	t, ok, future := quorumTime(a.policy, cos, now, a.cfg.ClockSkew)
	for _, w := range future {
		a.addf(r, KindClock, "clock:"+w+cos[w].String(), nil,
			"witness %s dated its cosignature %s, more than %s ahead of this clock (%s): it does not count for freshness",
			w, cos[w].UTC().Format(time.RFC3339), a.cfg.ClockSkew, now.UTC().Format(time.RFC3339))
	}
	if !ok {
		a.addf(r, KindStale, fmt.Sprintf("stale:%d:%x:future", c.Size, c.Hash), nil,
			"no quorum of cosignatures on the checkpoint of size %d is dated within the allowed clock skew", c.Size)
		return
	}
	r.Fresh = t
	age := now.Sub(t)
	if m := a.cfg.Metrics; m != nil {
		m.age.Set(age.Seconds())
	}
	if age > a.cfg.MaxAge {
		a.addf(r, KindStale, fmt.Sprintf("stale:%d:%x:%d", c.Size, c.Hash, t.Unix()), map[string]any{"quorum_time": t.UTC(), "age_seconds": int64(age.Seconds())},
			"stale: the newest quorum of cosignatures on the log's checkpoint (size %d) is from %s, %s ago, more than --max-age %s: the log or its witnesses have stopped, or the log shows this auditor an old view",
			c.Size, t.UTC().Format(time.RFC3339), age.Round(time.Second), a.cfg.MaxAge)
	}
}

// proofs builds consistency proofs from the log's tiles for one tree size.
type proofs struct {
	f    *fetcher
	size uint64
	pb   *client.ProofBuilder
}

func newProofs(f *fetcher, size uint64) *proofs { return &proofs{f: f, size: size} }

func (p *proofs) consistency(ctx context.Context, m uint64) ([][]byte, error) {
	if p.pb == nil {
		pb, err := client.NewProofBuilder(ctx, p.size, p.f.tilesAt(p.size))
		if err != nil {
			return nil, err
		}
		p.pb = pb
	}
	return p.pb.ConsistencyProof(ctx, m, p.size)
}

// rootAt computes the root of the first m leaves of the tree from its tiles.
func (p *proofs) rootAt(ctx context.Context, m uint64) ([]byte, error) {
	if m == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	nodes, err := client.FetchRangeNodes(ctx, m, p.f.tilesAt(p.size))
	if err != nil {
		return nil, err
	}
	rng, err := rangeFactory.NewRange(0, m, nodes)
	if err != nil {
		return nil, err
	}
	return rng.GetRootHash(nil)
}

// extends checks that newer (the log's, whose tiles p reads) extends older,
// and records what it finds. older.c.Size <= newer.c.Size.
func (a *Auditor) extends(ctx context.Context, r *Report, p *proofs, older, newer *signedCP) (bool, error) {
	m, n := older.c.Size, newer.c.Size
	if m == n {
		if bytes.Equal(older.c.Hash, newer.c.Hash) {
			return true, nil
		}
		a.splitView(r, older.raw, newer.raw, older.src, newer.src, older.c, newer.c)
		return false, nil
	}
	if m == 0 {
		return true, nil
	}
	proof, err := p.consistency(ctx, m)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctxErr(ctx)
		}
		a.unavailable(r, fmt.Sprintf("build a consistency proof from size %d to %d from the log's tiles", m, n), err)
		return false, nil
	}
	if checkpoint.VerifyConsistency(m, older.c.Hash, proof, newer.c) == nil {
		return true, nil
	}
	// The proof does not lead from older's root. What root of size m does
	// the log's own tree of size n contain? If the proof leads from that one
	// to the new root, the log signed two incompatible trees: evidence.
	other, err := p.rootAt(ctx, m)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctxErr(ctx)
		}
		a.unavailable(r, fmt.Sprintf("compute the root of size %d from the log's tiles", m), err)
		return false, nil
	}
	if !bytes.Equal(other, older.c.Hash) && checkpoint.VerifyConsistency(m, other, proof, newer.c) == nil {
		a.inconsistent(r, older.raw, newer.raw, older.src, newer.src, older.c, newer.c, proof, other)
		return false, nil
	}
	a.addf(r, KindBadTiles, fmt.Sprintf("tiles:%d:%x:%d", m, older.c.Hash, n), nil,
		"the log's tiles do not prove its checkpoint of size %d consistent with %s of size %d, nor with any tree of that size: its hash tiles contradict its own signed root",
		n, older.src, m)
	return false, nil
}

// Follow runs Check every interval until ctx ends; each finding is passed
// to OnFinding once per distinct problem, not once per round. It returns
// ctx's cause.
func (a *Auditor) Follow(ctx context.Context, interval time.Duration, onReport func(*Report)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := a.Check(ctx)
		if err != nil {
			return err
		}
		if onReport != nil {
			onReport(r)
		}
		select {
		case <-ctx.Done():
			return ctxErr(ctx)
		case <-t.C:
		}
	}
}
