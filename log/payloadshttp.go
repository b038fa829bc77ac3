package log

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tidemark/tidemark/checkpoint"
)

// GET /v1/payloads?from=N&to=M serves what the commitment leaves in
// [from, to) commit to, for auditors (tidemark audit --full) and exports:
// NDJSON, one line per commitment leaf, in index order,
//
//	{"index":N,"opening":{"salt":"…","leaf":"…"}}
//	{"index":N,"erased":true}
//
// Entries that are not commitment leaves get no line. It is authenticated
// like /v1/search (a read token when the log has --read-tokens). The rows
// are served as the store holds them, for the auditor to check: one that
// does not open its commitment (the store was changed) is served all the
// same, logged and counted (tidemark_log_payload_mismatch_total), where
// receipts and search refuse it.

// maxPayloadsRange is the most entries one request covers.
const maxPayloadsRange = 1024

// payloadsChunk is the most openings a request holds at once: it reads
// them from the store and writes them out a chunk at a time, so that one
// request holds at most 64 event leaves (4 MiB), not 1,024 (64 MiB).
const payloadsChunk = 64

// PayloadLine is one line of GET /v1/payloads.
type PayloadLine struct {
	Index   uint64              `json:"index"`
	Opening *checkpoint.Opening `json:"opening,omitempty"`
	Erased  bool                `json:"erased,omitempty"`
}

func (s *Server) handlePayloads(w http.ResponseWriter, r *http.Request) {
	if !s.readAllowed(w, r, "payloads") {
		return
	}
	q := r.URL.Query()
	from, err1 := decimal(q.Get("from"))
	to, err2 := decimal(q.Get("to"))
	if err1 != nil || err2 != nil {
		s.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "give ?from=N&to=M, decimal indexes without leading zeros, the range [N, M)"))
		return
	}
	if to <= from || to-from > maxPayloadsRange {
		s.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "the range [%d, %d) must hold 1 to %d entries", from, to, maxPayloadsRange))
		return
	}
	size, err := s.integratedSize()
	if err != nil {
		s.fail(w, r, fmt.Errorf("couldn't read the tree size: %w", err))
		return
	}
	if to > size {
		s.fail(w, r, errorf(http.StatusBadRequest, "beyond_tree", "to=%d is past the log's %d entries", to, size))
		return
	}
	var idxs []uint64
	var entries [][]byte
	err = s.scanEntries(r.Context(), from, to, size, func(idx uint64, entry []byte) error {
		if looksCommitment(entry) {
			idxs = append(idxs, idx)
			entries = append(entries, entry)
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for start := 0; start < len(entries); start += payloadsChunk {
		end := min(start+payloadsChunk, len(entries))
		opened := make([]*checkpoint.Opening, end-start)
		if s.payloads != nil {
			if opened, err = s.openEntriesAs(r.Context(), func(i int) uint64 { return idxs[start+i] }, entries[start:end], badServe); err != nil {
				if start == 0 {
					s.fail(w, r, err)
					return
				}
				// Lines are out: cut the answer short, so that the
				// client sees a broken stream, not a complete one.
				s.log.Warn("GET /v1/payloads: couldn't read the payload store in the middle of an answer", "err", err)
				panic(http.ErrAbortHandler)
			}
		}
		for i, o := range opened {
			line := PayloadLine{Index: idxs[start+i], Opening: o, Erased: o == nil}
			if err := enc.Encode(line); err != nil {
				return
			}
		}
		if err := bw.Flush(); err != nil {
			return
		}
	}
	_ = bw.Flush()
}

// decimal parses a decimal number without leading zeros.
func decimal(v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != v {
		return 0, fmt.Errorf("%q is not a decimal number", v)
	}
	return n, nil
}
