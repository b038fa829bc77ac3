package auditor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"

	"github.com/tidemark/tidemark/checkpoint"
)

// A log in commitment mode (`tidemark log --leaves commitment`) appends,
// for each event, a commitment leaf: SHA-256 of a random salt and the event
// leaf it would have written, with the received time and source in the
// clear. The events and their salts (openings) live in a payload store the
// log serves at GET <log>/v1/payloads?from=N&to=M, as NDJSON, one line per
// commitment leaf in [N, M):
//
//	{"index":N,"opening":{"salt":"<base64>","leaf":"<base64 of the event leaf>"}}
//	{"index":N,"erased":true}
//
// A full check fetches the openings of each bundle's commitment leaves and
// holds each to its leaf (checkpoint.Opening.Verify). What it proves:
//
//   - An opening that verifies is the event the log committed to when it
//     appended the leaf: the payload store cannot change an event, or serve
//     one entry's event for another, without the hash giving it away.
//   - A commitment leaf without its opening was erased, and that is fine
//     only if an erasure leaf in the checked tree covers its index: the
//     erasure itself is logged (by whom, when, why), so deleting content
//     without saying so is a finding (missing-payload).
//   - Content served for an index an erasure leaf covers was not deleted
//     as the log claims (erased-served): served by this check after the
//     erasure leaf was in the tree it checks, or served when the check
//     meets the erasure leaf and asks for what it erased again (an
//     erasure of entries checked by an earlier run).
//
// Erasure leaves come after what they erase (an erasure whose ranges reach
// its own index or beyond is a bad leaf), so the check keeps the indices of
// missing and served contents as runs (a few numbers for a log that erases
// in ranges) and settles them as each erasure leaf is merged in order.

// maxPayloadLine bounds one line of /v1/payloads: a base64 event leaf of up
// to checkpoint.MaxLeafSize bytes, a salt and the JSON around them.
const maxPayloadLine = (checkpoint.MaxLeafSize+2)/3*4 + 256

// maxPayloadRange is the most entries one GET /v1/payloads may ask for.
const maxPayloadRange = 1024

// errPayloadsRefused is a log refusing its payloads to this auditor.
var errPayloadsRefused = errors.New("refused")

// payloadLine is one line of GET /v1/payloads.
type payloadLine struct {
	Index   *uint64             `json:"index"`
	Opening *checkpoint.Opening `json:"opening"`
	Erased  bool                `json:"erased"`
}

// payloads fetches the openings of the commitment leaves in [from, to):
// a map from index to opening, with erased (and unlisted) leaves absent.
// A malformed answer is an error.
func (f *fetcher) payloads(ctx context.Context, from, to uint64, buf *bytes.Buffer) (map[uint64]*checkpoint.Opening, error) {
	u := f.base.JoinPath("v1/payloads")
	u.RawQuery = "from=" + strconv.FormatUint(from, 10) + "&to=" + strconv.FormatUint(to, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s: %w", u, resp.Status, errPayloadsRefused)
	case http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %w (the log has commitment leaves but does not serve their contents: is it a Tidemark log older than its data?)", u, os.ErrNotExist)
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	limit := int64(to-from)*maxPayloadLine + 4096
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if n > limit {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes for %d entries", u, limit, to-from)
	}
	out := map[uint64]*checkpoint.Opening{}
	next := from
	for data := buf.Bytes(); len(data) > 0; {
		line, rest, _ := bytes.Cut(data, []byte("\n"))
		data = rest
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var p payloadLine
		if err := json.Unmarshal(line, &p); err != nil {
			return nil, fmt.Errorf("GET %s: a line is not a payload: %v", u, err)
		}
		switch {
		case p.Index == nil:
			return nil, fmt.Errorf("GET %s: a line has no index", u)
		case *p.Index < next || *p.Index >= to:
			return nil, fmt.Errorf("GET %s: index %d is out of order or outside [%d, %d)", u, *p.Index, from, to)
		case p.Erased == (p.Opening != nil):
			return nil, fmt.Errorf("GET %s: the line for index %d must have either an opening or \"erased\":true", u, *p.Index)
		}
		next = *p.Index + 1
		if p.Opening != nil {
			out[*p.Index] = p.Opening
		}
	}
	return out, nil
}

// indexSet is a set of leaf indices as sorted runs [From, To), disjoint and
// not touching. Indices are added in increasing order.
type indexSet struct {
	runs []checkpoint.IndexRange
}

// add adds i, which is above every index in s.
func (s *indexSet) add(i uint64) {
	if n := len(s.runs); n > 0 && s.runs[n-1].To == i {
		s.runs[n-1].To++
		return
	}
	s.runs = append(s.runs, checkpoint.IndexRange{From: i, To: i + 1})
}

// remove takes r out of s and returns the runs it took.
func (s *indexSet) remove(r checkpoint.IndexRange) []checkpoint.IndexRange {
	// The first run that ends after r.From.
	i := sort.Search(len(s.runs), func(k int) bool { return s.runs[k].To > r.From })
	var took []checkpoint.IndexRange
	var keep []checkpoint.IndexRange
	j := i
	for ; j < len(s.runs) && s.runs[j].From < r.To; j++ {
		run := s.runs[j]
		took = append(took, checkpoint.IndexRange{From: max(run.From, r.From), To: min(run.To, r.To)})
		if run.From < r.From {
			keep = append(keep, checkpoint.IndexRange{From: run.From, To: r.From})
		}
		if run.To > r.To {
			keep = append(keep, checkpoint.IndexRange{From: r.To, To: run.To})
		}
	}
	if len(took) == 0 {
		return nil
	}
	s.runs = append(s.runs[:i], append(keep, s.runs[j:]...)...)
	return took
}

// count is the number of indices in s.
func (s *indexSet) count() uint64 {
	var n uint64
	for _, r := range s.runs {
		n += r.To - r.From
	}
	return n
}

func rangeText(r checkpoint.IndexRange) string {
	if r.To-r.From == 1 {
		return "leaf " + strconv.FormatUint(r.From, 10)
	}
	return fmt.Sprintf("leaves [%d, %d)", r.From, r.To)
}
