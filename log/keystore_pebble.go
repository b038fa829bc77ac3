package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// pebbleKeys is the key store beside a POSIX log: a Pebble database (the
// LSM tree of CockroachDB) in the data directory.
//
// Why not SQLite, as before: keys are hashes, so each new key lands on a
// random page of a B-tree, and a commit of a thousand keys rewrites about a
// thousand pages (4 KiB each) to the journal. An LSM tree appends the
// rows to its log and sorts them in the background, and answers the
// lookup of a key that is not there (most keys are new) from Bloom
// filters in memory. Memory is bounded by the memtables and the block
// cache (pebbleOptions), whatever the number of keys.
//
// A POSIX log has one process, and the store one writer goroutine (the
// Dedup's), so a transaction is a batch plus the rows it wrote so far:
// nothing else writes between its reads and its commit.
//
// Layout: "k" + keyID -> the row (ev, state, idx or from_size, owner);
// "c" + keyID -> owner, for each open claim, so that recovery finds the
// claims without reading every key; "m built" once the index covers the
// whole log.
type pebbleKeys struct {
	db *pebble.DB
}

// Key prefixes.
const (
	pebbleRow   = 'k'
	pebbleClaim = 'c'
)

var pebbleBuilt = []byte("m built")

// pebbleOptions bound Pebble's memory (two 16 MiB memtables, a 32 MiB block
// cache) and keep its filters useful: a row's "prefix" is "k" and its key
// hash, so that one Bloom filter probe answers a key and its variants.
// Hashes do not compress: no compression.
func pebbleOptions() *pebble.Options {
	cmp := *pebble.DefaultComparer
	cmp.Split = func(k []byte) int {
		if len(k) == 33 && k[0] == pebbleRow {
			return 17
		}
		return len(k)
	}
	cmp.Name = "tidemark.idempotency.v1"
	o := &pebble.Options{
		Comparer:                    &cmp,
		Cache:                       pebble.NewCache(32 << 20),
		MemTableSize:                16 << 20,
		MemTableStopWritesThreshold: 4,
		Logger:                      quietPebbleLogger{},
	}
	o.Levels = make([]pebble.LevelOptions, 7)
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].FilterType = pebble.TableFilter
		o.Levels[i].Compression = pebble.NoCompression
	}
	return o.EnsureDefaults()
}

// quietPebbleLogger drops Pebble's informational lines; its errors reach
// the callers as errors.
type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(string, ...any)  {}
func (quietPebbleLogger) Errorf(string, ...any) {}
func (quietPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// openPebbleKeys opens (or creates) the store in dir.
func openPebbleKeys(dir string) (*pebbleKeys, error) {
	opts := pebbleOptions()
	defer opts.Cache.Unref() // the database holds its own reference
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return &pebbleKeys{db: db}, nil
}

func (p *pebbleKeys) migrate(context.Context) (bool, error) {
	v, closer, err := p.db.Get(pebbleBuilt)
	if errors.Is(err, pebble.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer closer.Close()
	if !bytes.Equal(v, []byte{keySchemaVersion}) {
		return false, fmt.Errorf("the idempotency index has layout %x, this version reads %d: move it away and start again, and the log rebuilds it from its entries", v, keySchemaVersion)
	}
	return false, nil
}

func (p *pebbleKeys) markBuilt(context.Context) error {
	return p.db.Set(pebbleBuilt, []byte{keySchemaVersion}, pebble.Sync)
}

func (p *pebbleKeys) begin(context.Context) (keyTx, error) {
	return &pebbleTx{p: p, b: p.db.NewBatch(), wrote: map[keyID]*keyRow{}, read: map[[16]byte]bool{}, rows: map[keyID]keyRow{}}, nil
}

// heartbeat is not needed: one process writes the store.
func (p *pebbleKeys) heartbeat(context.Context, int64, string) error { return nil }

// deadOwners returns the owners of open claims other than self: a POSIX
// log's store has one live writer, this process.
func (p *pebbleKeys) deadOwners(_ context.Context, self int64, _ time.Duration) ([]int64, error) {
	seen := map[int64]bool{}
	var out []int64
	err := p.claims(func(_ keyID, owner int64) error {
		if owner != self && !seen[owner] {
			seen[owner] = true
			out = append(out, owner)
		}
		return nil
	})
	return out, err
}

func (p *pebbleKeys) claimsOf(_ context.Context, owners []int64) ([]deadClaim, error) {
	want := map[int64]bool{}
	for _, o := range owners {
		want[o] = true
	}
	var out []deadClaim
	err := p.claims(func(id keyID, owner int64) error {
		if !want[owner] {
			return nil
		}
		r, ok, err := p.get(id)
		if err != nil || !ok || r.done {
			return err
		}
		out = append(out, deadClaim{id: id, ev: r.ev, owner: owner, from: r.idx})
		return nil
	})
	return out, err
}

// claims calls f for every open claim.
func (p *pebbleKeys) claims(f func(id keyID, owner int64) error) error {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pebbleClaim}, UpperBound: []byte{pebbleClaim + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var id keyID
		if len(it.Key()) != 33 || len(it.Value()) != 8 {
			return fmt.Errorf("the idempotency index holds a damaged claim %x", it.Key())
		}
		copy(id[:], it.Key()[1:])
		if err := f(id, int64(binary.BigEndian.Uint64(it.Value()))); err != nil {
			return err
		}
	}
	return it.Error()
}

// get reads the committed row of id; for a claim, idx holds from_size.
func (p *pebbleKeys) get(id keyID) (keyRow, bool, error) {
	v, closer, err := p.db.Get(pebbleKey(pebbleRow, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return keyRow{}, false, nil
	}
	if err != nil {
		return keyRow{}, false, err
	}
	defer closer.Close()
	r, err := decodePebbleRow(v)
	return r, err == nil, err
}

func (p *pebbleKeys) count(context.Context) (int64, error) {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pebbleRow}, UpperBound: []byte{pebbleRow + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		if r, err := decodePebbleRow(it.Value()); err == nil && r.done {
			n++
		}
	}
	return n, it.Error()
}

func (p *pebbleKeys) close() error { return p.db.Close() }

func pebbleKey(prefix byte, id keyID) []byte {
	k := make([]byte, 33)
	k[0] = prefix
	copy(k[1:], id[:])
	return k
}

// A row's value: ev (16 bytes), a state byte (1 complete, 0 claimed), the
// index (complete) or the tree size when claimed (8), the owner (8).
func encodePebbleRow(r keyRow) []byte {
	v := make([]byte, 33)
	copy(v, r.ev[:])
	if r.done {
		v[16] = 1
	}
	binary.BigEndian.PutUint64(v[17:], r.idx)
	binary.BigEndian.PutUint64(v[25:], uint64(r.owner))
	return v
}

// decodePebbleRow reads a value; for a claim, idx holds from_size.
func decodePebbleRow(v []byte) (keyRow, error) {
	var r keyRow
	if len(v) != 33 {
		return r, fmt.Errorf("the idempotency index holds a damaged row of %d bytes", len(v))
	}
	copy(r.ev[:], v)
	r.done = v[16] == 1
	r.idx = binary.BigEndian.Uint64(v[17:])
	r.owner = int64(binary.BigEndian.Uint64(v[25:]))
	return r, nil
}

// pebbleTx is a transaction of pebbleKeys: a batch, and the rows it wrote
// (nil for a deleted one), which its reads see before the database.
type pebbleTx struct {
	p     *pebbleKeys
	b     *pebble.Batch
	wrote map[keyID]*keyRow
	// read: the committed rows of the key hashes looked up (every row of
	// a hash in it is in rows), so that the claims after a lookup need no
	// second read.
	read map[[16]byte]bool
	rows map[keyID]keyRow
}

func (t *pebbleTx) Commit() error {
	if t.b == nil {
		return errors.New("transaction already ended")
	}
	var err error
	if !t.b.Empty() {
		err = t.b.Commit(pebble.Sync)
	}
	if cerr := t.b.Close(); err == nil {
		err = cerr
	}
	t.b = nil
	return err
}

func (t *pebbleTx) Rollback() error {
	if t.b == nil {
		return nil
	}
	err := t.b.Close()
	t.b = nil
	return err
}

// row reads id as this transaction sees it; for a claim, idx holds
// from_size.
func (t *pebbleTx) row(id keyID) (keyRow, bool, error) {
	if r, ok := t.wrote[id]; ok {
		if r == nil {
			return keyRow{}, false, nil
		}
		return *r, true, nil
	}
	if t.read[id.base()] {
		r, ok := t.rows[id]
		return r, ok, nil
	}
	return t.p.get(id)
}

func (t *pebbleTx) set(id keyID, r keyRow) error {
	t.wrote[id] = &r
	return t.b.Set(pebbleKey(pebbleRow, id), encodePebbleRow(r), nil)
}

func (t *pebbleTx) delete(id keyID) error {
	t.wrote[id] = nil
	return t.b.Delete(pebbleKey(pebbleRow, id), nil)
}

func (t *pebbleTx) lookup(_ context.Context, hashes [][16]byte) (map[keyID]keyRow, error) {
	out := make(map[keyID]keyRow, len(hashes))
	it, err := t.p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pebbleRow}, UpperBound: []byte{pebbleRow + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	prefix := make([]byte, 17)
	prefix[0] = pebbleRow
	for _, h := range hashes {
		copy(prefix[1:], h[:])
		// The key's own row and its variants share the prefix.
		for ok := it.SeekPrefixGE(prefix); ok && bytes.HasPrefix(it.Key(), prefix); ok = it.Next() {
			var id keyID
			copy(id[:], it.Key()[1:])
			r, err := decodePebbleRow(it.Value())
			if err != nil {
				return nil, err
			}
			out[id] = r
			t.rows[id] = r
		}
		t.read[h] = true
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	asked := make(map[[16]byte]bool, len(hashes))
	if len(t.wrote) > 0 {
		for _, h := range hashes {
			asked[h] = true
		}
	}
	for id, r := range t.wrote {
		if !asked[id.base()] {
			continue
		}
		if r == nil {
			delete(out, id)
		} else {
			out[id] = *r
		}
	}
	for id, r := range out {
		if !r.done {
			r.idx = 0 // from_size is not an index
			out[id] = r
		}
	}
	return out, nil
}

func (t *pebbleTx) insertClaims(_ context.Context, owner int64, from uint64, claims []newClaim) (int, error) {
	n := 0
	var o [8]byte
	binary.BigEndian.PutUint64(o[:], uint64(owner))
	for _, c := range claims {
		if _, ok, err := t.row(c.id); err != nil {
			return n, err
		} else if ok {
			continue
		}
		if err := t.set(c.id, keyRow{ev: c.ev, idx: from, owner: owner}); err != nil {
			return n, err
		}
		if err := t.b.Set(pebbleKey(pebbleClaim, c.id), o[:], nil); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (t *pebbleTx) complete(_ context.Context, owner int64, rows []completion) (lost int, err error) {
	for _, c := range rows {
		r, ok, err := t.row(c.id)
		if err != nil {
			return lost, err
		}
		if ok && (r.done || r.owner != owner) {
			lost++
			continue
		}
		if err := t.setComplete(c.id, c.ev, c.idx); err != nil {
			return lost, err
		}
	}
	return lost, nil
}

func (t *pebbleTx) setComplete(id keyID, ev [16]byte, idx uint64) error {
	if err := t.set(id, keyRow{ev: ev, idx: idx, done: true}); err != nil {
		return err
	}
	return t.b.Delete(pebbleKey(pebbleClaim, id), nil)
}

func (t *pebbleTx) release(_ context.Context, owner int64, ids []keyID) error {
	for _, id := range ids {
		r, ok, err := t.row(id)
		if err != nil {
			return err
		}
		if !ok || r.done || r.owner != owner {
			continue
		}
		if err := t.delete(id); err != nil {
			return err
		}
		if err := t.b.Delete(pebbleKey(pebbleClaim, id), nil); err != nil {
			return err
		}
	}
	return nil
}

func (t *pebbleTx) resolve(_ context.Context, rows []completion) error {
	for _, c := range rows {
		r, ok, err := t.row(c.id)
		if err != nil {
			return err
		}
		if !ok || r.done {
			continue
		}
		if err := t.setComplete(c.id, r.ev, c.idx); err != nil {
			return err
		}
	}
	return nil
}

func (t *pebbleTx) forget(_ context.Context, owners []int64) error {
	want := map[int64]bool{}
	for _, o := range owners {
		want[o] = true
	}
	var drop []keyID
	if err := t.p.claims(func(id keyID, owner int64) error {
		if want[owner] {
			drop = append(drop, id)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, id := range drop {
		r, ok, err := t.row(id)
		if err != nil {
			return err
		}
		if ok && !r.done {
			if err := t.delete(id); err != nil {
				return err
			}
		}
		if err := t.b.Delete(pebbleKey(pebbleClaim, id), nil); err != nil {
			return err
		}
	}
	return nil
}

func (t *pebbleTx) insertComplete(_ context.Context, rows []dedupRow) error {
	for _, r := range rows {
		if _, ok, err := t.row(r.id); err != nil {
			return err
		} else if ok {
			continue
		}
		if err := t.set(r.id, keyRow{ev: r.ev, idx: r.idx, done: true}); err != nil {
			return err
		}
	}
	return nil
}
