// Package testmysql gives a test a database of its own on a MySQL-compatible
// server (MariaDB on this machine and in CI): created when the test starts,
// dropped when it ends. The server is TIDEMARK_TEST_MYSQL, a DSN without a
// database (default root@tcp(127.0.0.1:3306)/). Without a server the test
// is skipped, or fails when CI=true: in CI a test that did not run must not
// pass unseen. Only tests import it.
package testmysql

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Server returns the DSN of the test server, without a database.
func Server() string {
	if dsn := os.Getenv("TIDEMARK_TEST_MYSQL"); dsn != "" {
		return dsn
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// New creates a database named tidemark_test_<random> and returns its DSN.
func New(t testing.TB) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(Server())
	if err != nil {
		t.Fatalf("TIDEMARK_TEST_MYSQL: %v", err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err == nil {
		admin.SetConnMaxLifetime(time.Minute)
		err = admin.Ping()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, and no MySQL-compatible server answers at %s: %v", cfg.Addr, err)
		}
		t.Skipf("no MySQL-compatible server at %s (set TIDEMARK_TEST_MYSQL): %v", cfg.Addr, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "tidemark_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		t.Fatalf("couldn't create the test database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name); err != nil {
			t.Errorf("couldn't drop the test database %s: %v", name, err)
		}
		admin.Close()
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}
