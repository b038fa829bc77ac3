package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
)

func run(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(tidemarkBin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	if out, code := run(t, dir, "keygen", "audit.example.com/prod", "--out", "prod"); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	fi, err := os.Stat(filepath.Join(dir, "prod.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("prod.key: %v, mode %v, want 0600", err, fi.Mode())
	}
	skey := strings.TrimSpace(readFile(t, filepath.Join(dir, "prod.key")))
	vkey := strings.TrimSpace(readFile(t, filepath.Join(dir, "prod.pub")))
	s, err := checkpoint.NewLogSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := checkpoint.NewLogVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "audit.example.com/prod", Size: 1, Hash: make([]byte, 32)}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := checkpoint.Open(signed, v); err != nil {
		t.Errorf("the .pub key does not verify what the .key signs: %v", err)
	}
	if out, code := run(t, dir, "keygen", "audit.example.com/prod", "--out", "prod"); code == 0 {
		t.Errorf("keygen overwrote an existing key: %s", out)
	}

	if out, code := run(t, dir, "keygen", "--witness", "witness.example.com/w1"); code != 0 {
		t.Fatalf("keygen --witness: %d %s", code, out)
	}
	wv := strings.TrimSpace(readFile(t, filepath.Join(dir, "witness.pub")))
	if _, err := checkpoint.NewWitnessVerifier(wv); err != nil {
		t.Errorf("witness.pub is not a cosignature/v1 key: %v", err)
	}
	if _, err := checkpoint.NewWitnessSigner(strings.TrimSpace(readFile(t, filepath.Join(dir, "witness.key")))); err != nil {
		t.Errorf("witness.key: %v", err)
	}
}

func TestOpenWritesNeedLoopback(t *testing.T) {
	dir := t.TempDir()
	out, code := run(t, dir, "log", "--data", filepath.Join(dir, "d"), "--listen", "0.0.0.0:0")
	if code != 2 || !strings.Contains(out, "--insecure-open-writes") {
		t.Errorf("open writes on 0.0.0.0: exit %d, %s", code, out)
	}
	if out, code := run(t, dir, "log"); code != 2 || !strings.Contains(out, "--data") {
		t.Errorf("no --data: exit %d, %s", code, out)
	}
	if out, code := run(t, dir, "nonsense"); code != 2 || !strings.Contains(out, "unknown subcommand") {
		t.Errorf("unknown subcommand: exit %d, %s", code, out)
	}
	if out, code := run(t, dir, "log", "--help"); code != 0 || !strings.Contains(out, "-batch-age") {
		t.Errorf("log --help: exit %d, %s", code, out)
	}
}

func TestFirstStartPrintsTheVerifierKey(t *testing.T) {
	dir := t.TempDir()
	lp := startLog(t, dir)
	lp.stop(t, 15)
	vkey := strings.TrimSpace(readFile(t, filepath.Join(dir, "log.pub")))
	if !strings.Contains(lp.out.String(), "verifier key: "+vkey) {
		t.Errorf("first start did not print the verifier key %s:\n%s", vkey, lp.out)
	}
	lp = startLog(t, dir)
	lp.stop(t, 15)
	if strings.Contains(lp.out.String(), "created a log key") {
		t.Errorf("second start created a key again:\n%s", lp.out)
	}
}

func TestToken(t *testing.T) {
	out, code := run(t, t.TempDir(), "token", "deploy-bot")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 2 || !strings.HasPrefix(lines[0], "tdm_") || !strings.HasPrefix(lines[1], "deploy-bot sha256:") {
		t.Errorf("token: %d %q", code, out)
	}
}
