package auditor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// Gossip: a log that shows one history to its witnesses and another to an
// auditor passes every check the auditor makes against the log alone. So the
// auditor also asks each witness of the policy that has a URL for the latest
// checkpoint it cosigned for the log (GET <url>/<hex SHA-256 of origin>/
// checkpoint) and compares it with what the log serves: at equal sizes the
// roots must match; when the witness's is smaller, the log's tiles must prove
// the log's tree extends it. Either failure, between two checkpoints both
// signed by the log, is written down as evidence. A witness ahead of the log
// cannot be checked against the log's tiles until the log catches up.

// gossipTimeout bounds one witness's answer.
const gossipTimeout = 15 * time.Second

func originHash(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:])
}

type witnessView struct {
	name, url string
	raw       []byte
	err       error
}

func (a *Auditor) gossip(ctx context.Context, r *Report, p *proofs, cur, acc *signedCP) error {
	var views []witnessView
	for _, w := range a.policy.Witnesses {
		if w.URL != "" {
			views = append(views, witnessView{name: w.Name, url: w.URL})
		}
	}
	var wg sync.WaitGroup
	for i := range views {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, gossipTimeout)
			defer cancel()
			views[i].raw, views[i].err = getWitness(wctx, a.cfg.HTTPClient, views[i].url, a.origin)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctxErr(ctx)
	}
	for _, v := range views {
		src := fmt.Sprintf("witness %s (%s)", v.name, v.url)
		if errors.Is(v.err, os.ErrNotExist) {
			a.addf(r, KindWitness, "witness-none:"+v.name, nil, "%s has cosigned no checkpoint of this log", src)
			continue
		}
		if v.err != nil {
			a.addf(r, KindWitness, "witness-down:"+v.name, nil, "couldn't ask %s for its checkpoint: %v", src, v.err)
			continue
		}
		c, _, err := checkpoint.Open(v.raw, a.policy.LogVerifiers()...)
		if err != nil {
			a.addf(r, KindWitness, "witness-bad:"+v.name+string(v.raw), nil,
				"%s serves a checkpoint that is not validly signed by the log: %v", src, err)
			continue
		}
		wcp := &signedCP{raw: v.raw, c: c, src: src}
		// The accepted checkpoint of the state is a third view: compare it
		// with the witness's at equal sizes.
		if acc != nil && acc.c.Size == c.Size && !bytes.Equal(acc.c.Hash, c.Hash) {
			a.splitView(r, acc.raw, v.raw, acc.src, src, acc.c, c)
		}
		if cur == nil {
			continue
		}
		switch {
		case c.Size > cur.c.Size:
			// Ahead of the log: the log's tiles cannot prove anything
			// about a bigger tree. The next rounds will.
		default:
			if _, err := a.extends(ctx, r, p, wcp, cur); err != nil {
				return err
			}
		}
	}
	return nil
}
