package log

import (
	"errors"
	"syscall"

	"github.com/cockroachdb/pebble"
)

// indexAdvice says what to do about an index that cannot be opened for a
// reason of its own, to be appended to the error.
func indexAdvice(err error) string {
	switch {
	case pebble.IsCorruptionError(err), errors.Is(err, syscall.ENOTDIR):
		return " (the index is damaged or is not an idempotency index; it is a cache of the log: move it away and start again, and the log rebuilds it from its entries)"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return " (check that the log's user may read and write it and the directory it is in)"
	}
	return ""
}
