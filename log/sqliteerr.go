package log

import (
	"errors"

	"modernc.org/sqlite" // the pure Go SQLite driver
)

// SQLite's primary result codes (https://sqlite.org/rescode.html) that tell
// apart a disk that refuses writes from a file that is not a usable index.
const (
	sqliteReadOnly = 8  // SQLITE_READONLY
	sqliteIOErr    = 10 // SQLITE_IOERR and its extended codes
	sqliteCorrupt  = 11 // SQLITE_CORRUPT
	sqliteFull     = 13 // SQLITE_FULL
	sqliteCantOpen = 14 // SQLITE_CANTOPEN
	sqliteNotADB   = 26 // SQLITE_NOTADB
)

// sqliteCode returns the primary result code of a SQLite error in err's
// chain, or 0 if there is none.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return 0
	}
	return e.Code() & 0xff
}

// sqliteMayBeDisk says whether err is a SQLite error that a full or
// read-only disk can cause. Opening an index in WAL mode writes (it creates
// the -wal and -shm files beside it and grows the -shm one), and SQLite
// seldom says "full" for that: a -shm file that cannot grow is
// SQLITE_IOERR_SHMSIZE, "disk I/O error (4874)", and one that cannot be
// created SQLITE_CANTOPEN or SQLITE_READONLY. A damaged file (SQLITE_CORRUPT,
// SQLITE_NOTADB) is never the disk's.
func sqliteMayBeDisk(err error) bool {
	switch sqliteCode(err) {
	case sqliteReadOnly, sqliteIOErr, sqliteFull, sqliteCantOpen:
		return true
	}
	return false
}

// sqliteAdvice says what to do about an index that cannot be opened for a
// reason of its own, to be appended to the error.
func sqliteAdvice(err error) string {
	switch sqliteCode(err) {
	case sqliteCorrupt, sqliteNotADB:
		return " (the file is damaged or is not an idempotency index; the index is a cache of the log: move the file away and start again, and the log rebuilds it from its entries)"
	case sqliteCantOpen, sqliteReadOnly:
		return " (check that it is a file, not a directory, and that the log's user may read and write it and the directory it is in)"
	}
	return ""
}
