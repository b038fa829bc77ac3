package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// witnessedResult is one event's answer to POST /v1/events?wait=witnessed:
// its index and its receipt.
type witnessedResult struct {
	Index     uint64 `json:"index"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// Salt, in a commitment log, is the salt of the entry's commitment.
	Salt    []byte              `json:"salt,omitempty"`
	Receipt *checkpoint.Receipt `json:"receipt"`
}

// waitParam reads ?wait: "" (answer once durable) or "witnessed".
func waitParam(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("wait"); v {
	case "":
		return false, nil
	case "witnessed":
		return true, nil
	default:
		return false, errorf(http.StatusBadRequest, "bad_request", "wait=%q: the only value is wait=witnessed", v)
	}
}

// answerWitnessed waits until a witnessed checkpoint covers every result,
// then answers with their receipts. When the wait times out the events are
// still logged: the answer (504) says so, with their indexes.
func (s *Server) answerWitnessed(w http.ResponseWriter, r *http.Request, ndjson bool, results []eventResult) {
	started := time.Now()
	var last uint64
	for _, res := range results {
		last = max(last, res.Index)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WitnessWaitTimeout)
	defer cancel()
	wc, err := s.awaiter.wait(ctx, last)
	if err != nil {
		s.notWitnessed(w, r, ndjson, results, err)
		return
	}
	out := make([]witnessedResult, len(results))
	withOpening := s.mayRead(r)
	for i, res := range results {
		rc, err := s.receipt(ctx, wc, res.Index, res.leaf, res.event, res.opening, withOpening)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out[i] = witnessedResult{Index: res.Index, Duplicate: res.Duplicate, Salt: res.Salt, Receipt: rc}
	}
	s.witnessMetrics.receiptWait.Observe(time.Since(started).Seconds())
	if ndjson {
		writeJSON(w, http.StatusOK, map[string]any{"results": out})
	} else {
		writeJSON(w, http.StatusOK, out[0])
	}
}

// notWitnessed answers a wait that ended before a witnessed checkpoint
// covered the events: 504 after the timeout, and nothing (the client is
// gone) when the request was canceled.
func (s *Server) notWitnessed(w http.ResponseWriter, r *http.Request, ndjson bool, results []eventResult, err error) {
	if r.Context().Err() != nil {
		return
	}
	s.metrics.rejected.WithLabelValues("not_witnessed").Inc()
	idx := make([]string, len(results))
	for i, res := range results {
		idx[i] = strconv.FormatUint(res.Index, 10)
	}
	size := "none yet"
	if wc, _ := s.awaiter.current(); wc != nil {
		size = "size " + strconv.FormatUint(wc.c.Size, 10)
	}
	msg := fmt.Sprintf("the events are logged (index %s) but no checkpoint cosigned by the witness quorum covered them within %s (latest witnessed checkpoint: %s; %v): "+
		"do not send them again; fetch each receipt later with GET /v1/receipt/{index}",
		strings.Join(idx, ", "), s.cfg.WitnessWaitTimeout, size, err)
	body := map[string]any{"error": msg}
	if ndjson {
		body["results"] = results
	} else {
		body["index"] = results[0].Index
		if results[0].Duplicate {
			body["duplicate"] = true
		}
	}
	writeJSON(w, http.StatusGatewayTimeout, body)
}

// handleReceipt serves GET /v1/receipt/{index}: a receipt for an integrated
// entry against the latest witnessed checkpoint. The leaf is the entry's
// contents, so with read tokens the request needs one, as the entry bundles
// do; except in a commitment log, whose commitment and erasure leaves hold
// no event: there their receipts are public, and carry the opening (the
// event) only for a request that may read events.
func (s *Server) handleReceipt(w http.ResponseWriter, r *http.Request) {
	raw := mux.Vars(r)["index"]
	index, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || strconv.FormatUint(index, 10) != raw {
		s.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "index %q is not a decimal number without leading zeros", raw))
		return
	}
	if s.payloads == nil && !s.readAllowed(w, r, "receipts") {
		return
	}
	size, err := s.integratedSize()
	if err != nil {
		s.fail(w, r, fmt.Errorf("couldn't read the tree size: %w", err))
		return
	}
	if index >= size {
		s.fail(w, r, errorf(http.StatusNotFound, "not_found", "there is no entry %d: the log has %d entries", index, size))
		return
	}
	wc, _ := s.awaiter.current()
	if wc == nil || wc.c.Size <= index {
		latest := "none yet"
		if wc != nil {
			latest = "size " + strconv.FormatUint(wc.c.Size, 10)
		}
		e := errorf(http.StatusServiceUnavailable, "not_witnessed", "entry %d is logged but not yet covered by a checkpoint cosigned by the witness quorum (latest: %s): retry shortly", index, latest)
		e.retryAfter = 1
		s.fail(w, r, e)
		return
	}
	// A commitment log holds only commitment and erasure leaves (its
	// POST /add takes no raw entry): every receipt is public, its
	// opening only for a request that may read events.
	rc, err := s.receipt(r.Context(), wc, index, nil, nil, nil, s.mayRead(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rc)
}

// handlePolicy serves GET /v1/policy: the trust policy verifiers need.
func (s *Server) handlePolicy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(s.policyText)
}

// receipt builds the receipt of the entry at index against wc, which covers
// it, and checks the inclusion proof before handing it out.
// leaf, when the caller has it, saves reading the entry back. event, when
// set (a duplicate: the entry was logged by an earlier request), is the
// canonical event the requester sent: a receipt for an entry that does not
// hold it is never handed out. In a commitment log, opening (read from the
// payload store when nil) opens the leaf; the receipt carries it when
// withOpening is set, and an erased entry's receipt has none.
func (s *Server) receipt(ctx context.Context, wc *witnessed, index uint64, leaf, event []byte, opening *checkpoint.Opening, withOpening bool) (*checkpoint.Receipt, error) {
	if leaf == nil {
		var err error
		if leaf, err = s.readLeaf(ctx, index, wc.c.Size); err != nil {
			return nil, err
		}
	}
	commitment := s.payloads != nil && checkpoint.KindOf(leaf) == checkpoint.KindCommitment
	if opening == nil && commitment {
		o, err := s.openEntries(ctx, only(index), [][]byte{leaf})
		if err != nil {
			return nil, err
		}
		opening = o[0]
	}
	held := leaf
	if opening != nil {
		held = opening.Leaf
	}
	// A duplicate of an erased entry: its event can no longer be
	// compared (the idempotency index matched its hash); the receipt
	// proves the commitment, with no opening, as GET /v1/receipt does.
	erased := commitment && opening == nil
	if event != nil && !erased && !leafHoldsEvent(held, event) {
		return nil, fmt.Errorf("entry %d, answered as a duplicate, does not hold the event sent: refusing to hand out its receipt", index)
	}
	hashes, err := wc.inclusionProof(ctx, index, s.readTile)
	if err != nil {
		return nil, fmt.Errorf("couldn't build the inclusion proof of entry %d in tree size %d: %w", index, wc.c.Size, err)
	}
	if err := checkpoint.VerifyInclusion(leaf, index, hashes, wc.c); err != nil {
		return nil, fmt.Errorf("the inclusion proof of entry %d does not verify against the witnessed checkpoint: %w", index, err)
	}
	proof := checkpoint.FormatProof(checkpoint.Proof{Index: index, Hashes: hashes, Checkpoint: wc.signed})
	rc := &checkpoint.Receipt{Index: index, Leaf: leaf, Proof: string(proof)}
	if withOpening {
		rc.Opening = opening
	}
	return rc, nil
}

// leafHoldsEvent reports whether an event leaf's event is exactly event
// (canonical JSON). The leaf starts with its event: {"event":<event>,...
func leafHoldsEvent(leaf, event []byte) bool {
	const prefix = `{"event":`
	rest, ok := bytes.CutPrefix(leaf, []byte(prefix))
	return ok && bytes.HasPrefix(rest, event) && len(rest) > len(event) && rest[len(event)] == ','
}

// readLeaf returns the entry at index from its bundle in a tree of size.
func (s *Server) readLeaf(ctx context.Context, index, size uint64) ([]byte, error) {
	bundle := index / layout.EntryBundleWidth
	p := layout.PartialTileSize(0, bundle, size)
	b, err := s.reader.ReadEntryBundle(ctx, bundle, p)
	if err != nil && p > 0 {
		// The partial bundle of an older size may be gone once the bundle
		// is full; the full one starts with the same entries.
		b, err = s.reader.ReadEntryBundle(ctx, bundle, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't read the entry bundle of entry %d: %w", index, err)
	}
	var eb api.EntryBundle
	if err := eb.UnmarshalText(b); err != nil {
		return nil, fmt.Errorf("couldn't parse the entry bundle of entry %d: %w", index, err)
	}
	i := index % layout.EntryBundleWidth
	if i >= uint64(len(eb.Entries)) {
		return nil, fmt.Errorf("the entry bundle of entry %d has only %d entries", index, len(eb.Entries))
	}
	return eb.Entries[i], nil
}

// readTile reads a hash tile for a proof in a tree of the size the proof
// builder was made for. When the partial tile of that size is gone (Tessera
// removes partial tiles once the full tile exists), the full tile's first
// hashes are the same.
func (s *Server) readTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := s.reader.ReadTile(ctx, level, index, p)
	if err == nil || p == 0 {
		return b, err
	}
	full, ferr := s.reader.ReadTile(ctx, level, index, 0)
	if ferr != nil || len(full) < int(p)*checkpoint.HashSize {
		return nil, errors.Join(err, ferr)
	}
	return full[:int(p)*checkpoint.HashSize], nil
}

// inclusionProof builds a proof in the tree of wc with the proof nodes
// shared by every receipt against wc, so that the tiles are read, and the
// nodes above them hashed, once per checkpoint, not once per receipt.
func (wc *witnessed) inclusionProof(ctx context.Context, index uint64, readTile client.TileFetcherFunc) ([][]byte, error) {
	wc.pbMu.Lock()
	defer wc.pbMu.Unlock()
	if wc.pn == nil {
		wc.pn = &proofNodes{size: wc.c.Size, read: readTile}
	}
	return wc.pn.inclusion(ctx, index)
}

// proofNodes builds inclusion proofs in a tree of one size from its tiles,
// and keeps each node hash it reads or computes. The receipts against one
// checkpoint share most of their proof nodes: Tessera's ProofBuilder
// (v1.0.4) keeps the tiles but hashes again, for each proof, the up to 128
// tile hashes under each node inside a tile; at 1,000 receipts a second
// that was a third of the log's CPU (bench/receipt.sh, issue 13). Every
// proof is still checked against the checkpoint before it is handed out
// (Server.receipt). Not safe for concurrent use.
type proofNodes struct {
	size  uint64
	read  client.TileFetcherFunc
	tiles map[[2]uint64][][]byte    // (tile level, index): the tile's hashes
	nodes map[compact.NodeID][]byte // computed nodes inside tiles
}

// Bounds on what proofNodes keeps, past which it starts again: GET
// /v1/receipt/{index} is public, and an unchanged checkpoint can stay the
// latest for long. About 2 MiB of hashes each.
const (
	maxProofTiles = 256
	maxProofNodes = 1 << 16
)

func (p *proofNodes) inclusion(ctx context.Context, index uint64) ([][]byte, error) {
	if p.tiles == nil || len(p.tiles) > maxProofTiles {
		p.tiles = map[[2]uint64][][]byte{}
	}
	if p.nodes == nil || len(p.nodes) > maxProofNodes {
		p.nodes = map[compact.NodeID][]byte{}
	}
	ns, err := proof.Inclusion(index, p.size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(ns.IDs))
	for i, id := range ns.IDs {
		if hashes[i], err = p.node(ctx, id); err != nil {
			return nil, err
		}
	}
	return ns.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

// node returns the hash of the perfect subtree id, which lies inside the
// tree's tiles: a tile's hash, or the hash of its two children.
func (p *proofNodes) node(ctx context.Context, id compact.NodeID) ([]byte, error) {
	if h, ok := p.nodes[id]; ok {
		return h, nil
	}
	tileLevel, tileIndex, nodeLevel, nodeIndex := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
	var h []byte
	if nodeLevel > 0 {
		l, err := p.node(ctx, compact.NewNodeID(id.Level-1, 2*id.Index))
		if err != nil {
			return nil, err
		}
		r, err := p.node(ctx, compact.NewNodeID(id.Level-1, 2*id.Index+1))
		if err != nil {
			return nil, err
		}
		h = rfc6962.DefaultHasher.HashChildren(l, r)
	} else {
		t, err := p.tile(ctx, tileLevel, tileIndex)
		if err != nil {
			return nil, err
		}
		if nodeIndex >= uint64(len(t)) {
			return nil, fmt.Errorf("tile %d/%d of tree size %d has %d hashes, not hash %d", tileLevel, tileIndex, p.size, len(t), nodeIndex)
		}
		h = t[nodeIndex]
	}
	p.nodes[id] = h
	return h, nil
}

func (p *proofNodes) tile(ctx context.Context, level, index uint64) ([][]byte, error) {
	k := [2]uint64{level, index}
	if t, ok := p.tiles[k]; ok {
		return t, nil
	}
	raw, err := p.read(ctx, level, index, layout.PartialTileSize(level, index, p.size))
	if err != nil {
		return nil, fmt.Errorf("couldn't read tile %d/%d: %w", level, index, err)
	}
	var t api.HashTile
	if err := t.UnmarshalText(raw); err != nil {
		return nil, fmt.Errorf("couldn't parse tile %d/%d: %w", level, index, err)
	}
	p.tiles[k] = t.Nodes
	return t.Nodes, nil
}
