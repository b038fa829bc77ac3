package log

import (
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
// are not httpErrors are internal: the client sees a generic message.
func writeError(w http.ResponseWriter, err error) (status int, cause string) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{status: http.StatusInternalServerError, cause: "internal", msg: "internal error: " + err.Error()}
	}
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.retryAfter))
	}
	writeJSON(w, he.status, map[string]string{"error": he.msg})
	return he.status, he.cause
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
