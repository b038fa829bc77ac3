package log

import (
	"context"
	"fmt"
	"time"

	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// Recovery repairs the idempotency index from the log, which is its record.
//
// A frontend that dies leaves the claims of its requests in flight: each
// was committed before its entry was appended, and names the tree size
// when it was made. The entry, if it was appended at all, lies at or above
// that size and carries its key in the leaf. So recovery reads the leaves
// from the oldest such size to the end of the tree, completes each claim
// whose entry it finds there, and deletes the others: their requests
// failed, and their retries append.
//
// A frontend is dead when its heartbeat (every heartbeatEvery, in
// tidemark_frontends, by the database's clock) is older than the lease.
// Every frontend checks every recoverEvery, and recovers what it finds;
// two doing it at once write the same rows. On a POSIX log there is one
// frontend: at start, every claim in the index is from a process that
// died, and recovery runs before the log takes a write.

// How frontends watch each other.
const (
	heartbeatEvery = time.Second
	recoverEvery   = 2 * time.Second
	// frontendLease is how long a frontend may miss its heartbeats before
	// the others take it for dead. It is far above the time a batch takes
	// to be sequenced, which is what a frontend thought dead could still
	// append in.
	frontendLease = 15 * time.Second
)

// A leafSource reads the log for recovery.
type leafSource struct {
	// size is the integrated tree size; next, the next index to be
	// sequenced (equal to size where sequencing integrates at once).
	size func(context.Context) (uint64, error)
	next func(context.Context) (uint64, error)
	// bundle reads an entry bundle; it may hold more entries than asked
	// for, which are ignored.
	bundle func(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

// scanLeaves calls f for every keyed leaf with index in [from, to), in log
// order, a bundle at a time.
func (ls leafSource) scanLeaves(ctx context.Context, from, to uint64, f func(idx uint64, source, key string, ev [16]byte) error) (scanned uint64, err error) {
	for i := from / layout.EntryBundleWidth; i*layout.EntryBundleWidth < to; i++ {
		start := i * layout.EntryBundleWidth
		raw, err := ls.bundle(ctx, i, layout.PartialTileSize(0, i, to))
		if err != nil {
			return scanned, fmt.Errorf("couldn't read entry bundle %d: %w", i, err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return scanned, fmt.Errorf("couldn't parse entry bundle %d: %w", i, err)
		}
		for j, e := range b.Entries {
			idx := start + uint64(j)
			if idx < from || idx >= to {
				continue
			}
			scanned++
			source, key, ev, ok := leafKey(e)
			if !ok {
				continue
			}
			if err := f(idx, source, key, ev); err != nil {
				return scanned, err
			}
		}
	}
	return scanned, nil
}

// settled waits until every entry sequenced so far is integrated, and
// returns the tree size then: recovery must read every entry a dead
// frontend may have sequenced.
func (ls leafSource) settled(ctx context.Context) (uint64, error) {
	next, err := ls.next(ctx)
	if err != nil {
		return 0, fmt.Errorf("couldn't read the next index: %w", err)
	}
	for {
		size, err := ls.size(ctx)
		if err != nil {
			return 0, fmt.Errorf("couldn't read the tree size: %w", err)
		}
		if size >= next {
			return size, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Build makes the index of a whole log: for a new index beside a log that
// may already hold keyed entries (an index of an older layout, a log
// migrated in). It writes complete rows as the log's own order decides
// them (the first entry under a key wins; a later one with another event
// is its variant) and keeps rows that exist, so frontends that build at
// once agree. It runs before the log takes a write.
//
// A POSIX log's index (volatile claims) is built the same way at every
// start from its watermark: the rows of entries above it may be missing.
func (d *idempotencyIndex) Build(ctx context.Context, ls leafSource, start uint64) (scanned uint64, err error) {
	size, err := ls.settled(ctx)
	if err != nil {
		return 0, err
	}
	if start > size {
		return 0, fmt.Errorf("the idempotency index covers %d entries but the log has only %d: is this the index of another log?", start, size)
	}
	// Rows are decided a chunk of leaves at a time: memory holds one chunk.
	const chunk = 64 * layout.EntryBundleWidth
	for from := start; from < size; from += chunk {
		var leaves []indexRow
		var keys [][16]byte
		n, err := ls.scanLeaves(ctx, from, min(from+chunk, size), func(idx uint64, source, key string, ev [16]byte) error {
			leaves = append(leaves, indexRow{idx: idx, ev: ev})
			keys = append(keys, keyHash(source, key))
			return nil
		})
		scanned += n
		if err != nil {
			return scanned, err
		}
		have, err := lookupKeys(ctx, d.store, keys)
		if err != nil {
			return scanned, err
		}
		var rows []indexRow
		for i, l := range leaves {
			h := keyOf(keys[i])
			if cur, ok := have[h]; ok && cur.ev != l.ev {
				h = variantOf(keys[i], l.ev)
			}
			if _, ok := have[h]; ok {
				continue
			}
			have[h] = keyRow{ev: l.ev, idx: l.idx, done: true}
			rows = append(rows, indexRow{id: h, idx: l.idx, ev: l.ev})
		}
		if err := inTx(ctx, d.store, func(tx keyTx) error { return tx.insertComplete(ctx, rows) }); err != nil {
			return scanned, fmt.Errorf("couldn't write the idempotency index: %w", err)
		}
	}
	if d.volatile && size > 0 {
		if err := inTx(ctx, d.store, func(tx keyTx) error { return tx.setWatermark(ctx, size) }); err != nil {
			return scanned, err
		}
	}
	return scanned, d.store.markBuilt(ctx)
}

// Recover resolves the claims of frontends that have been silent for
// longer than lease (all others but this one, with lease 0), from the
// leaves. It returns how many claims it completed and deleted.
func (d *idempotencyIndex) Recover(ctx context.Context, ls leafSource, lease time.Duration) (completed, deleted int, err error) {
	owners, err := d.store.deadOwners(ctx, d.owner, lease)
	if err != nil || len(owners) == 0 {
		return 0, 0, err
	}
	claims, err := d.store.claimsOf(ctx, owners)
	if err != nil {
		return 0, 0, err
	}
	// Read the size after the claims: everything the dead frontends
	// appended is integrated by then.
	size, err := ls.settled(ctx)
	if err != nil {
		return 0, 0, err
	}
	open := map[keyID]deadClaim{}
	from := size
	for _, c := range claims {
		open[c.id] = c
		from = min(from, c.from)
	}
	var rows []completion
	if len(open) > 0 {
		if _, err := ls.scanLeaves(ctx, from, size, func(idx uint64, source, key string, ev [16]byte) error {
			h := keyHash(source, key)
			for _, h := range []keyID{keyOf(h), variantOf(h, ev)} {
				if c, ok := open[h]; ok && c.ev == ev && idx >= c.from {
					rows = append(rows, completion{h, idx, ev})
					delete(open, h)
					return nil
				}
			}
			return nil
		}); err != nil {
			return 0, 0, err
		}
	}
	if err := inTx(ctx, d.store, func(tx keyTx) error {
		if err := tx.resolve(ctx, rows); err != nil {
			return err
		}
		return tx.forget(ctx, owners)
	}); err != nil {
		return 0, 0, err
	}
	if len(claims) > 0 {
		d.log.Info("recovered the idempotency claims of frontends that stopped", "frontends", len(owners), "completed_from_leaves", len(rows), "released", len(open), "scanned_from", from, "to", size)
	}
	return len(rows), len(open), nil
}

// watch keeps this frontend's heartbeat and recovers the claims of dead
// ones, until ctx ends.
func (d *idempotencyIndex) watch(ctx context.Context, ls leafSource) {
	hb := time.NewTicker(heartbeatEvery)
	defer hb.Stop()
	rc := time.NewTicker(recoverEvery)
	defer rc.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			if d.halted.Load() {
				continue
			}
			err := d.store.heartbeat(ctx, d.owner, d.host)
			if err == nil {
				d.lastBeat.Store(time.Now().UnixNano())
			}
			if err != nil && !failing && ctx.Err() == nil {
				d.log.Warn("couldn't record this frontend's heartbeat in the idempotency index; other frontends take it for dead after the lease", "lease", d.lease, "err", err)
			}
			failing = err != nil
		case <-rc.C:
			if d.halted.Load() {
				continue
			}
			if _, _, err := d.Recover(ctx, ls, d.lease); err != nil && ctx.Err() == nil {
				d.log.Warn("couldn't recover the idempotency claims of stopped frontends; trying again", "err", err)
			}
		}
	}
}
