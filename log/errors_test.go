package log

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// Issue 9, hole 7: a 500 answered the internal error text (file paths) to
// the client. It answers a generic message with a request id, and the log's
// own logs have the details under that id.
func TestInternalErrorsAnswerARequestIDNotDetails(t *testing.T) {
	faults := &appendFaults{err: errors.New("couldn't marshal the tile for /srv/secret-layout/tile/entries/x001/042: unexpected state")}
	var logs bytes.Buffer
	tl := newTestLog(t, func(c *Config) {
		c.wrapAdd = faults.wrap
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	faults.failAfter(0)
	for _, r := range []response{
		tl.post("/v1/events", "application/json", []byte(`{"a":1}`)),
		tl.post("/add", "", []byte("raw")),
	} {
		id := r.header.Get("X-Request-Id")
		if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "secret-layout") {
			t.Errorf("%d %s: the internal error reached the client", r.status, r.body)
		}
		if len(id) != 16 || !strings.Contains(string(r.body), id) {
			t.Errorf("answer %s does not name its request id %q", r.body, id)
		}
		if !strings.Contains(logs.String(), "request_id="+id) || !strings.Contains(logs.String(), "secret-layout") {
			t.Errorf("the log's own logs lack the details of request %s:\n%s", id, logs.String())
		}
	}
}
