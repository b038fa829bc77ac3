package log

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// An httpError is an error with the status it is answered with. Handlers
// return them; writeError maps every error to a status in one place.
type httpError struct {
	status     int
	msg        string
	retryAfter int // seconds, for 503 and 429
	cause      string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, cause, format string, args ...any) *httpError {
	return &httpError{status: status, cause: cause, msg: fmt.Sprintf(format, args...)}
}

// writeError answers err as JSON {"error": "..."} with its status. Errors that
// are not httpErrors are internal: their text (paths, library messages) is
// for the log's own logs, and the client sees a generic message with the
// request id that finds them there.
func writeError(w http.ResponseWriter, err error) (status int, cause string) {
	he := publicError(w, err)
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.retryAfter))
	}
	writeJSON(w, he.status, map[string]string{"error": he.msg})
	return he.status, he.cause
}

// publicError returns err as it may be shown to a client: itself when it is
// an httpError, and otherwise a generic 500 naming the request id.
func publicError(w http.ResponseWriter, err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	return &httpError{status: http.StatusInternalServerError, cause: "internal",
		msg: "internal error (request id " + w.Header().Get(requestIDHeader) + "): nothing is known to be logged from this request; retry, and if it persists give the request id to the log's operator, whose logs have the details"}
}

// requestIDHeader is the answer header that names a request in the log's
// own logs.
const requestIDHeader = "X-Request-Id"

// withRequestID gives every request an id of the server's choosing (a
// client's X-Request-Id is not trusted to be unique), in the answer's
// X-Request-Id header, for errors and logs to refer to.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		w.Header().Set(requestIDHeader, hex.EncodeToString(b[:]))
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
