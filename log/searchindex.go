package log

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/tidemark/tidemark/internal/search"
)

// SearchIndexFile is the search index of a log kept in the data directory
// dir (POSIX), in its state directory.
func SearchIndexFile(dir string) string {
	return filepath.Join(dir, stateDir, searchFile)
}

// OpenMySQLSearchIndex opens the search index of a log on MySQL: tables
// in the database of dsn (the form of `tidemark log --mysql`). close
// closes the store and the database.
func OpenMySQLSearchIndex(ctx context.Context, dsn string) (st *search.Store, close func() error, err error) {
	db, err := openMySQL(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	// A log's database, not one that the search tables would be the first
	// of: the log creates Tessera's tables on its first start.
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM TreeState").Scan(&n); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("the database holds no Tidemark log (%v): give the --mysql DSN of `tidemark log`, after its first start", err)
	}
	st, err = search.OpenMySQL(ctx, db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return st, func() error {
		st.Close()
		return db.Close()
	}, nil
}
