package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// A SearchQuery finds events in a log (GET /v1/search): every filter set
// must hold. Results come newest first.
type SearchQuery struct {
	// Actor, Action, Resource, Source and Outcome match a field's whole
	// value; a value ending in '*' matches every value that starts with
	// the rest ("prod/*").
	Actor, Action, Resource, Source, Outcome string
	// Since and Until bound the time the log received the event:
	// Since <= received < Until. Zero: unbounded.
	Since, Until time.Time
	// Q is words that must all be among the event's string values (a
	// word ending in '*' is a prefix).
	Q string
	// Limit is the most hits of one page (0: the log's default, 50; at
	// most 500).
	Limit int
	// Cursor is the Next of the previous page; "" for the first.
	Cursor string
}

// values is the query as URL parameters.
func (q SearchQuery) values() url.Values {
	v := url.Values{}
	for _, f := range []struct{ name, value string }{
		{"actor", q.Actor}, {"action", q.Action}, {"resource", q.Resource},
		{"source", q.Source}, {"outcome", q.Outcome}, {"q", q.Q}, {"cursor", q.Cursor},
	} {
		if f.value != "" {
			v.Set(f.name, f.value)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// A SearchHit is one event found, as the log read it back from its entry
// bundles. The log's word: CheckHit proves it with the entry's receipt.
type SearchHit struct {
	Index    uint64          `json:"index"`
	Received time.Time       `json:"received"`
	Source   string          `json:"source"`
	Event    json.RawMessage `json:"event"`
}

// A SearchPage is one answer of GET /v1/search.
type SearchPage struct {
	Results []SearchHit `json:"results"`
	// Next, when set, is the cursor of the next (older) page: set it as
	// the query's Cursor.
	Next string `json:"next,omitempty"`
	// CompleteTo is the tree size up to which the log's search index is
	// complete: events at or above it may be missing from the results.
	CompleteTo uint64 `json:"complete_to"`
}

// Search asks the log for one page of the events that match q. A log with
// read tokens needs Options.ReadToken (401 without it, 403 with one it does
// not know); a log without a search index answers 503, which is not
// retried. Follow Next with SearchPages.
func (c *Client) Search(ctx context.Context, q SearchQuery) (*SearchPage, error) {
	u := c.base.JoinPath("v1", "search")
	u.RawQuery = q.values().Encode()
	var raw json.RawMessage
	status, err := c.doRetry(ctx, false, http.MethodGet, u.String(), "", nil, nil, &raw)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, &Error{Status: status, Message: errorMessage(raw)}
	}
	var p SearchPage
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("client: the log's search answer is not one (%v): %.200s", err, raw)
	}
	if p.Next != "" && p.Next == q.Cursor {
		return nil, fmt.Errorf("client: the log answered the cursor %q with itself: paging would never end", q.Cursor)
	}
	return &p, nil
}

// SearchPages returns the pages of a search, following Next from q.Cursor
// until the last page or the first error (yielded, and the end).
func (c *Client) SearchPages(ctx context.Context, q SearchQuery) iter.Seq2[*SearchPage, error] {
	return func(yield func(*SearchPage, error) bool) {
		for {
			p, err := c.Search(ctx, q)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(p, nil) || p.Next == "" {
				return
			}
			q.Cursor = p.Next
		}
	}
}

// ErrNotTheHit is wrapped when an entry's receipt does not hold the event
// that a search answered for its index.
var ErrNotTheHit = errors.New("the receipt's leaf is not the search hit")

// CheckHit checks that a receipt is for a search hit: for its index, with
// an event leaf holding the hit's event (compared in canonical JSON), source
// and received time. With Verify of the receipt, it proves that the log
// holds the hit as the search answered it.
func CheckHit(h SearchHit, r *checkpoint.Receipt) error {
	if r == nil {
		return errors.New("client: no receipt")
	}
	if r.Index != h.Index {
		return fmt.Errorf("%w: the receipt is for entry %d, the hit is entry %d", ErrNotTheHit, r.Index, h.Index)
	}
	l, err := r.Event() // the leaf, or its opening's event leaf
	if err != nil {
		return fmt.Errorf("%w: entry %d shows no event: %v", ErrNotTheHit, h.Index, err)
	}
	// The log's answer is JSON it encoded again (with "<" as \u003c, say):
	// the same event has the same canonical form.
	ev, err := checkpoint.CanonicalEvent(h.Event)
	if err != nil {
		return fmt.Errorf("%w: the hit's event is not an I-JSON object: %v", ErrNotTheHit, err)
	}
	switch {
	case !bytes.Equal(ev.Canonical, l.Event):
		return fmt.Errorf("%w: entry %d holds %.200s, the search answered %.200s", ErrNotTheHit, h.Index, l.Event, ev.Canonical)
	case l.Source != h.Source:
		return fmt.Errorf("%w: entry %d was received from %q, the search answered %q", ErrNotTheHit, h.Index, l.Source, h.Source)
	case !l.Received.Equal(h.Received):
		return fmt.Errorf("%w: entry %d was received at %s, the search answered %s", ErrNotTheHit, h.Index,
			l.Received.UTC().Format(time.RFC3339Nano), h.Received.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// LatestSize returns the size of the log's latest checkpoint (GET
// /checkpoint), unverified: the log's word, for telling how far behind its
// search index is. Verify a receipt to prove anything.
func (c *Client) LatestSize(ctx context.Context) (uint64, error) {
	var raw json.RawMessage
	status, err := c.do(ctx, http.MethodGet, c.base.JoinPath("checkpoint").String(), "", nil, nil, &raw)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, &Error{Status: status, Message: errorMessage(raw)}
	}
	body := raw
	if i := bytes.Index(body, []byte("\n\n")); i >= 0 {
		body = body[:i+1]
	}
	cp, err := checkpoint.Parse(body)
	if err != nil {
		return 0, fmt.Errorf("client: the log's checkpoint: %w", err)
	}
	return cp.Size, nil
}
