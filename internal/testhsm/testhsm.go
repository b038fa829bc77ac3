// Package testhsm gives tests a SoftHSM2 token (Debian's softhsm2): a token
// directory and configuration of the test process's own, made on first use
// and pointed to by SOFTHSM2_CONF for the whole process (a PKCS#11 module
// reads its configuration once, when it is initialized, so every test of a
// process shares it), with tokens initialized by softhsm2-util. Without
// SoftHSM2 the test is skipped, or fails when CI=true: in CI a test that did
// not run must not pass unseen. Only tests import it.
package testhsm

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Module is where Debian installs SoftHSM2's PKCS#11 module.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN is the user PIN of every token made here.
const PIN = "1234"

var (
	once     sync.Once
	confDir  string
	setupErr error
	mu       sync.Mutex
)

// Available skips (or, with CI=true, fails) the test when SoftHSM2 is not
// installed.
func Available(t testing.TB) {
	t.Helper()
	_, errU := exec.LookPath("softhsm2-util")
	_, errM := os.Stat(Module)
	if errU != nil || errM != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, and SoftHSM2 is not installed (softhsm2-util, %s): apt-get install softhsm2", Module)
		}
		t.Skipf("SoftHSM2 is not installed (apt-get install softhsm2)")
	}
}

func setup() {
	confDir, setupErr = os.MkdirTemp("", "tidemark-softhsm")
	if setupErr != nil {
		return
	}
	tokens := filepath.Join(confDir, "tokens")
	if setupErr = os.Mkdir(tokens, 0o700); setupErr != nil {
		return
	}
	conf := filepath.Join(confDir, "softhsm2.conf")
	setupErr = os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
	if setupErr == nil {
		setupErr = os.Setenv("SOFTHSM2_CONF", conf)
	}
}

// Token initializes a new token with a random label and PIN as its user
// PIN, in the process's token directory, and returns its label. Make tokens
// before a module is loaded in this process: SoftHSM2 sees the tokens that
// exist when it is initialized (child processes, such as a tidemark binary
// under test, see all of them).
func Token(t testing.TB) string {
	t.Helper()
	Available(t)
	once.Do(setup)
	if setupErr != nil {
		t.Fatalf("couldn't set up SoftHSM2: %v", setupErr)
	}
	mu.Lock()
	defer mu.Unlock()
	var b [4]byte
	_, _ = rand.Read(b[:])
	label := "tidemark-" + hex.EncodeToString(b[:])
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "5678").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return label
}

// URI returns the PKCS#11 URI of the key labelled object in token, with the
// PIN in the URI.
func URI(token, object string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s&pin-value=%s", token, object, Module, PIN)
}
