package client

import (
	"context"
	"encoding/json"
	"net/http"
)

// An Erasure is the log's answer to Erase: the entry erased and the index
// of the erasure leaf that records it.
type Erasure struct {
	Index        uint64 `json:"index"`
	ErasureIndex uint64 `json:"erasure_index"`
}

// Erase asks a commitment log to erase the event of the entry at index
// (POST /v1/erase): the log appends an erasure leaf naming the entry, the
// reason and the admin, then deletes the event and its salt; the entry's
// commitment, and every proof, stay. Options.Token must be one of the
// log's admin tokens (--admin-tokens): a writer's token is refused (401).
// A refusal is an *Error: 404 no such entry, 409 not an event's
// commitment (a log of event leaves, a raw entry, an erasure) or erased
// already, 400 a bad reason (empty, or over 1024 bytes). An erasure whose
// answer was lost is retried like any request, and the retry then answers
// 409 (erased already): the erasure leaf says when.
func (c *Client) Erase(ctx context.Context, index uint64, reason string) (Erasure, error) {
	body, err := json.Marshal(map[string]any{"index": index, "reason": reason})
	if err != nil {
		return Erasure{}, err
	}
	var raw json.RawMessage
	status, err := c.do(ctx, http.MethodPost, c.base.JoinPath("v1", "erase").String(), "application/json", body, nil, &raw)
	if err != nil {
		return Erasure{}, err
	}
	if status != http.StatusOK {
		return Erasure{}, &Error{Status: status, Message: errorMessage(raw)}
	}
	var e Erasure
	if err := json.Unmarshal(raw, &e); err != nil {
		return Erasure{}, &Error{Status: status, Message: "not a JSON answer: " + err.Error()}
	}
	return e, nil
}
