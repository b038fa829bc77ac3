package log

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera"
)

// The append path that every write endpoint shares. /v1/events (events.go),
// the Kubernetes webhook (k8s.go) and OTLP (otlp.go) each turn a request
// into ingestEvents and hand them to appendBatch, which takes them through
// named stages:
//
//  1. admit: the handler admits the request's events (admit, limit.go)
//     before it decodes them, so a request that may not be logged costs no
//     decoding;
//  2. build leaves (buildLeaves): each event becomes its leaf, or a marked
//     stand-in, or a refusal; nothing is appended unless every event has a
//     leaf (or, in a partial append, its own error);
//  3. claim keys (claimKeys): the idempotency index claims the keys of the
//     keyed events and says, for each, whether this request must append it;
//  4. commit (commitLeaves, commitments.go): in a commitment log, each
//     leaf to append becomes a commitment leaf to a new salt, and the
//     salts and event leaves are written durably to the payload store;
//  5. append (appendLeaves): the leaves the index did not answer go to
//     Tessera together, and the index is told the indexes they got;
//  6. resolve (resolve): an event answered by the index, by a request in
//     flight with the same key, or by an earlier event of this request gets
//     that index, marked a duplicate.
//
// appendBatch returns once every new leaf is durably sequenced.

// leafEnvelope is about what a leaf adds to its event, besides the source
// and the key: {"event":,"received":"…","source":"","v":1} and escaping.
const leafEnvelope = 96

// eventResult is one event's answer.
type eventResult struct {
	Index     uint64 `json:"index"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// leaf is the entry this request appended, when it did: a receipt
	// needs it, and need not read it back from its bundle.
	leaf []byte
	// event, for a duplicate, is the canonical event the request sent: the
	// receipt, made from the entry already in the log, must hold it.
	event []byte
	// Truncated: the event was too large for a leaf and the log holds a
	// marked stand-in for it (see truncatedEvent).
	Truncated bool `json:"truncated,omitempty"`
	// err, in a partial append, is why this event was not logged.
	err error
	// Salt, in a commitment log, is the salt of the event's commitment
	// leaf: with the event leaf it opens the commitment (base64 in JSON).
	Salt []byte `json:"salt,omitempty"`
	// opening, in a commitment log, opens the leaf this request appended.
	opening *checkpoint.Opening
}

// An ingestEvent is one event of a request on its way to a leaf.
type ingestEvent struct {
	raw []byte
	// key is the idempotency key the leaf carries; "" for none, and then
	// the event's "id" member, if any, is its key.
	key string
	// explicit: the sender chose key (an Idempotency-Key header). A
	// different event under a used explicit key is refused (422); under any
	// other key it is logged as a new entry.
	explicit bool
	// where, unit and pos name the event in errors (name): where when it
	// is set, else "the event" (no unit), or unit pos+1 ("line 3", "item
	// 2"). The name is made only for an error, not for every event.
	where string
	unit  string
	pos   int
}

// k8sUnit is the unit of an item of a Kubernetes EventList: its name says
// its auditID and stage too.
const k8sUnit = "k8s item"

// name is how errors name the event.
func (ev ingestEvent) name() string {
	switch {
	case ev.where != "":
		return ev.where
	case ev.unit == "":
		return "the event"
	case ev.unit == k8sUnit:
		auditID, stage, _ := k8sEventID(ev.raw)
		return "item " + strconv.Itoa(ev.pos+1) + " (auditID " + strconv.Quote(auditID) + ", stage " + stage + ")"
	}
	return ev.unit + " " + strconv.Itoa(ev.pos+1)
}

// appendOptions say how appendBatch treats events that cannot be logged as
// they are.
type appendOptions struct {
	// truncate logs an event too large for a leaf as a marked stand-in
	// (truncatedEvent) instead of refusing the request; keep lists the
	// members the stand-in keeps first.
	truncate bool
	keep     []string
	// notIJSON logs an event that is not I-JSON as a marked stand-in of its
	// members that are (notIJSONEvent) instead of refusing the request.
	notIJSON bool
	// partial logs the events that can be logged and answers each of the
	// others with its error (in eventResult.err), instead of refusing the
	// whole request.
	partial bool
	// endpoint labels tidemark_log_appended_total ("events" when empty).
	endpoint string
}

// label is the endpoint label of the request's metrics.
func (o appendOptions) label() string { return cmp.Or(o.endpoint, "events") }

// built is one request's events once their leaves are built (buildLeaves):
// position i of each slice is event i of the request.
type built struct {
	evs     []ingestEvent
	results []eventResult // Truncated, or err for a refused event
	leaves  [][]byte      // nil for a refused event
	events  [][]byte      // the canonical event inside each leaf
	keyed   []keyedEvent  // what the idempotency index sees of each
	anyKey  bool          // some event has a key

	source   string
	received []time.Time // each event's "received"
	// commits, in a commitment log, are the commitment leaves appended
	// instead of leaves (commitLeaves), and openings what opens them.
	commits  [][]byte
	openings []*checkpoint.Opening
}

// appended is the leaf appended for event i: its commitment leaf in a
// commitment log, else its event leaf.
func (bt *built) appended(i int) []byte {
	if bt.commits != nil {
		return bt.commits[i]
	}
	return bt.leaves[i]
}

// appendBatch takes one request's events through the append path: build
// leaves, claim keys, append, resolve. Unless opts.partial, a request is
// taken whole or not at all. The caller has admitted the events (admit)
// before decoding them; each event brings its own idempotency key
// (requestEvents for /v1/events; k8sEvents, otlpEvents).
func (s *Server) appendBatch(ctx context.Context, source string, evs []ingestEvent, opts appendOptions) ([]eventResult, error) {
	bt, err := s.buildLeaves(source, evs, opts)
	if err != nil {
		return nil, err
	}
	if err := s.acceptingWrites(); err != nil {
		return nil, err
	}
	claims, err := s.claimKeys(ctx, source, bt, opts)
	if err != nil {
		return nil, err
	}
	if err := s.commitLeaves(ctx, bt, claims); err != nil {
		return nil, err
	}
	if err := s.appendLeaves(ctx, bt, claims, opts); err != nil {
		return nil, err
	}
	results, err := bt.resolve(ctx, claims)
	if err != nil {
		return nil, err
	}
	if err := s.openDuplicates(ctx, results); err != nil {
		return nil, err
	}
	return results, nil
}

// buildLeaves builds every event's leaf in one buffer, stamping each with
// a "received" time that strictly increases. An event that is not I-JSON,
// or too large for a leaf, becomes a marked stand-in where opts allow it,
// and otherwise refuses the request (or, partial, only itself).
func (s *Server) buildLeaves(source string, evs []ingestEvent, opts appendOptions) (*built, error) {
	n := len(evs)
	bt := &built{
		evs:     evs,
		results: make([]eventResult, n),
		leaves:  make([][]byte, n),
		events:  make([][]byte, n),
		keyed:   make([]keyedEvent, n),
		source:  source,
	}
	received := s.stamps.next(n)
	bt.received = received
	// All leaves of the request share one buffer: one allocation, not n.
	size := 0
	for _, ev := range evs {
		size += len(ev.raw) + leafEnvelope + len(source) + 2*len(ev.key) + 16
	}
	arena := make([]byte, 0, size)
	for i, ev := range evs {
		start := len(arena)
		leaf, id, evLen, truncated, err := buildLeaf(arena, ev, received[i], source, opts)
		if err != nil {
			if !opts.partial {
				return nil, err
			}
			bt.results[i] = eventResult{err: err}
			continue
		}
		arena = leaf
		// Full slice expression: a later append that outgrows the arena
		// moves on to a new array and leaves this leaf as it is.
		leaf = arena[start:len(arena):len(arena)]
		bt.results[i].Truncated = truncated
		bt.leaves[i] = leaf
		bt.events[i] = leaf[len(`{"event":`) : len(`{"event":`)+evLen]
		switch {
		case ev.key != "":
			bt.keyed[i] = keyedEvent{key: "k:" + ev.key, explicit: ev.explicit}
		case !id.IsZero():
			bt.keyed[i] = keyedEvent{key: "i:" + id.Key()}
		default:
			continue
		}
		bt.keyed[i].ev = eventHash(bt.events[i])
		bt.anyKey = true
	}
	return bt, nil
}

// buildLeaf appends ev's leaf to arena and returns the grown arena, the
// event's id, the length of the canonical event in the leaf, and whether
// the leaf holds a marked stand-in. On error arena is unchanged.
func buildLeaf(arena []byte, ev ingestEvent, received time.Time, source string, opts appendOptions) (grown []byte, id checkpoint.EventID, evLen int, truncated bool, err error) {
	start := len(arena)
	grown, id, evLen, err = checkpoint.AppendEventLeaf(arena, ev.raw, received, source, ev.key)
	if err != nil && opts.notIJSON {
		room := checkpoint.MaxLeafSize - checkpoint.LeafOverhead(source, ev.key)
		if standIn, serr := notIJSONEvent(ev.raw, room, opts.keep); serr == nil {
			grown, id, evLen, err = checkpoint.AppendEventLeaf(arena, standIn, received, source, ev.key)
			truncated = err == nil
		}
	}
	if err == nil && !truncated {
		leaf := grown[start:]
		err = checkReservedMembers(leaf[len(`{"event":`) : len(`{"event":`)+evLen])
	}
	if err == nil && len(grown)-start > checkpoint.MaxLeafSize && opts.truncate {
		leaf := grown[start:]
		room := checkpoint.MaxLeafSize - (len(leaf) - evLen)
		var standIn []byte
		if standIn, err = truncatedEvent(leaf[len(`{"event":`):len(`{"event":`)+evLen], room, opts.keep); err == nil {
			grown, id, evLen, err = checkpoint.AppendEventLeaf(grown[:start], standIn, received, source, ev.key)
			truncated = true
		}
	}
	switch {
	case err != nil:
		return arena, id, 0, false, errorf(http.StatusBadRequest, "bad_json", "%s: %v (events must be I-JSON objects, RFC 7493)", ev.name(), err)
	case len(grown)-start > checkpoint.MaxLeafSize:
		room := checkpoint.MaxLeafSize - (len(grown) - start - evLen)
		return arena[:start], id, 0, false, errorf(http.StatusRequestEntityTooLarge, "too_large",
			"%s is %d bytes in canonical JSON; a leaf is at most %d bytes, which leaves room for %d bytes of event", ev.name(), evLen, checkpoint.MaxLeafSize, room)
	}
	return grown, id, evLen, truncated, nil
}

// claimKeys claims the keys of the request's keyed events in the
// idempotency index (nil when no event has a key). It refuses the request,
// changing nothing, when an explicit key was used for another event (422)
// or the index cannot record the keys (503).
func (s *Server) claimKeys(ctx context.Context, source string, bt *built, opts appendOptions) (*batch, error) {
	if !bt.anyKey {
		return nil, nil
	}
	b, err := s.idempotency.begin(ctx, source, bt.keyed)
	if err != nil {
		var kc *keyConflict
		if errors.As(err, &kc) {
			return nil, keyConflictError(bt.evs[kc.pos], kc)
		}
		if errors.Is(err, errIndexUnavailable) {
			if kind := s.indexDiskFault(err); kind != "" {
				// The SQLite index shares the log's disk.
				s.metrics.storageErrors.WithLabelValues(kind).Inc()
				s.storageLog.log(s, kind, err)
				e := errorf(http.StatusServiceUnavailable, "disk_"+kind, "%s", storageMessage(kind, bt.evs, nil))
				e.retryAfter = storageRetryAfter
				return nil, e
			}
			s.log.Warn("a write with idempotency keys was refused: the index could not claim its keys", "err", err)
			e := errorf(http.StatusServiceUnavailable, "index_unavailable", "the idempotency index could not record this request's keys; nothing was logged: retry")
			e.retryAfter = 1
			return nil, e
		}
		return nil, err
	}
	if reused := b.reusedCount(); reused > 0 {
		s.metrics.reusedIDs.WithLabelValues(opts.label()).Add(float64(reused))
		if held, ok := s.reusedLog.allow(reusedLogEvery); ok {
			s.log.Warn("events reuse the id of a different event: each is logged as a new entry (tidemark_log_reused_ids_total counts them all)",
				"endpoint", opts.label(), "source", source, "events", reused, "first_key", b.firstReusedKey(bt.keyed), "requests_not_logged", held)
		}
	}
	return b, nil
}

// reusedLogEvery bounds how often reused ids are logged: a sender can reuse
// ids on every request.
const reusedLogEvery = 10 * time.Second

// keyConflictError is the 422 of an explicit key used for another event.
func keyConflictError(ev ingestEvent, kc *keyConflict) error {
	if kc.pending {
		return errorf(http.StatusUnprocessableEntity, "key_reused",
			"%s: idempotency key %q is in use by a request in flight with a different event: a retry must send the same event; use a new Idempotency-Key for a new event", ev.name(), ev.key)
	}
	return errorf(http.StatusUnprocessableEntity, "key_reused",
		"%s: idempotency key %q was already used for a different event (index %d): a retry must send the same event; use a new Idempotency-Key for a new event", ev.name(), ev.key, kc.idx)
}

// appendLeaves appends, in one call to Tessera, every leaf that the index
// (claims, which may be nil) did not answer, records each index in
// bt.results, and tells the index which keys were written. Tessera ignores
// the context once an entry is queued: the entry lands even if the client
// goes away, which is why keys exist.
func (s *Server) appendLeaves(ctx context.Context, bt *built, claims *batch, opts appendOptions) error {
	var toAppend []*tessera.Entry
	var positions []int
	for i, leaf := range bt.leaves {
		if leaf == nil || !claims.appends(i) {
			continue // refused in a partial append, or answered by the index
		}
		toAppend = append(toAppend, tessera.NewEntry(bt.appended(i)))
		positions = append(positions, i)
	}
	started := time.Now()
	written := map[int]uint64{}
	var appendErr error
	if len(toAppend) > 0 {
		indexes, errs := s.queue.append(context.WithoutCancel(ctx), toAppend)
		for k, i := range positions {
			if errs[k] != nil {
				appendErr = errs[k]
				continue
			}
			bt.results[i].Index, bt.results[i].leaf = indexes[k].Index, bt.appended(i)
			if bt.openings != nil {
				bt.results[i].opening = bt.openings[i]
				bt.results[i].Salt = bt.openings[i].Salt
			}
			written[i] = indexes[k].Index
		}
	}
	if len(written) > 0 {
		s.metrics.integration.Observe(time.Since(started).Seconds())
		s.metrics.appended.WithLabelValues(opts.label()).Add(float64(len(written)))
	}
	if s.afterAppend != nil {
		if err := s.afterAppend(); err != nil {
			// A test stands in for a process that dies here: nothing more
			// of the index is written; the claims stay open in the store.
			if claims != nil {
				claims.abandon()
			}
			return err
		}
	}
	if claims != nil {
		claims.finish(written, appendErr)
	}
	if appendErr != nil {
		return s.appendError(appendErr, bt.evs, written)
	}
	return nil
}

// resolve fills in the events this request did not append: each gets the
// index the idempotency index (claims) answered it with, marked a
// duplicate, with the canonical event the request sent.
func (bt *built) resolve(ctx context.Context, claims *batch) ([]eventResult, error) {
	if claims == nil {
		return bt.results, nil
	}
	for i := range bt.evs {
		if bt.leaves[i] == nil || claims.appends(i) {
			continue
		}
		idx, sameAs, err := claims.answer(ctx, i)
		if err != nil {
			return nil, err
		}
		if sameAs >= 0 {
			idx = bt.results[sameAs].Index
		}
		bt.results[i] = eventResult{Index: idx, Duplicate: true, event: bt.events[i]}
	}
	return bt.results, nil
}

// stamps hands out "received" times that strictly increase, so that no two
// leaves of this process are byte-identical even for identical events in
// the same nanosecond (Tessera would otherwise take the second for a
// duplicate of the first).
type stamps struct {
	mu   sync.Mutex // guards last
	last time.Time
}

func (s *stamps) next(n int) []time.Time {
	now := time.Now().UTC().Round(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.After(s.last) {
		now = s.last.Add(time.Nanosecond)
	}
	out := make([]time.Time, n)
	for i := range out {
		out[i] = now.Add(time.Duration(i))
	}
	s.last = out[n-1]
	return out
}
