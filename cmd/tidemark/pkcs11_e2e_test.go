package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/pkcs11key"
	"github.com/tidemark/tidemark/internal/testhsm"
)

// TestKeysInHSM runs the real log and witness with their keys in a SoftHSM2
// token, made by `tidemark keygen --pkcs11`, through the rotation of
// docs/keys.md: an old HSM key alone, then the new and the old one, then
// the new one alone; the witness cosigns with its HSM key throughout, and
// `tidemark verify` accepts every receipt with a policy that keeps both log
// lines.
func TestKeysInHSM(t *testing.T) {
	token := testhsm.Token(t)
	dir := t.TempDir()
	// The PIN from the environment for some keys, from a file for others.
	t.Setenv(pkcs11key.PINEnv, testhsm.PIN)
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(testhsm.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := func(object, pin string) string {
		return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s%s", token, object, testhsm.Module, pin)
	}
	oldURI, newURI := uri("log-2025", "&pin-source=file:"+pinFile), uri("log-2026", "")
	wURI := uri("witness", "&pin-source=file:"+pinFile)

	keygen := func(name, u, prefix string, extra ...string) string {
		t.Helper()
		out, code := run(t, dir, append([]string{"keygen", name, "--pkcs11", u, "--out", prefix}, extra...)...)
		if code != 0 {
			t.Fatalf("keygen --pkcs11: exit %d\n%s", code, out)
		}
		if _, err := os.Stat(filepath.Join(dir, prefix+".key")); err == nil {
			t.Fatalf("keygen --pkcs11 wrote a key file")
		}
		return strings.TrimSpace(readFile(t, filepath.Join(dir, prefix+".pub")))
	}
	oldV := keygen("e2e.test/log", oldURI, "old")
	newV := keygen("e2e.test/log", newURI, "new")
	wV := keygen("e2e.test/hw", wURI, "w", "--witness")
	if out, code := run(t, dir, "keygen", "e2e.test/log", "--pkcs11", oldURI, "--out", "again"); code == 0 || !strings.Contains(out, "already has") {
		t.Errorf("keygen --pkcs11 with a label in use: exit %d\n%s", code, out)
	}
	for _, v := range []string{oldV, newV} {
		if _, err := checkpoint.NewLogVerifier(v); err != nil {
			t.Fatalf("log vkey %s: %v", v, err)
		}
	}
	if _, err := checkpoint.NewWitnessVerifier(wV); err != nil {
		t.Fatalf("witness vkey %s: %v", wV, err)
	}

	logs := filepath.Join(dir, "witness-logs")
	writeWitnessLogs(t, logs, oldV, newV)
	wp := startServer(t, "witness", []string{"--data", filepath.Join(dir, "witness"), "--key", wURI, "--name", "e2e.test/hw", "--init", "--logs", logs})
	if !strings.Contains(wp.out.String(), "verifier key: "+wV) {
		t.Errorf("the witness did not print its HSM key's vkey %s:\n%s", wV, wp.out)
	}
	policy := func(name string, vkeys ...string) string {
		var b strings.Builder
		for _, v := range vkeys {
			b.WriteString("log " + v + "\n")
		}
		fmt.Fprintf(&b, "witness hw %s %s\ngroup g 1 hw\nquorum g\n", wV, wp.url())
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	before, during, after := policy("before", oldV), policy("during", oldV, newV), policy("after", newV)

	data := filepath.Join(dir, "data")
	lp := startLog(t, data, append([]string{"--key", oldURI, "--policy", before}, fastWitnessing...)...)
	if !strings.Contains(lp.out.String(), "verifier key: "+oldV) {
		t.Errorf("the log did not print its HSM key's vkey %s:\n%s", oldV, lp.out)
	}
	rOld := receiptOf(t, lp.url(), `{"key":"old"}`)
	lp.stop(t, syscall.SIGTERM)
	lp = startLog(t, data, append([]string{"--key", newURI, "--key", oldURI, "--policy", during}, fastWitnessing...)...)
	rBoth := receiptOf(t, lp.url(), `{"key":"both"}`)
	lp.stop(t, syscall.SIGTERM)
	lp = startLog(t, data, append([]string{"--key", newURI, "--policy", during}, fastWitnessing...)...)
	rNew := receiptOf(t, lp.url(), `{"key":"new"}`)

	// The published checkpoint: the new HSM key's signature and the HSM
	// witness's cosignature.
	signed := []byte(get(t, lp.url()+"/checkpoint"))
	nv, _ := checkpoint.NewLogVerifier(newV)
	if _, _, err := checkpoint.Open(signed, nv); err != nil {
		t.Fatalf("checkpoint.Open with the new key: %v\n%s", err, signed)
	}
	wv, _ := checkpoint.NewWitnessVerifier(wV)
	if cos, err := checkpoint.Cosignatures(signed, wv); err != nil || len(cos) != 1 {
		t.Errorf("cosignatures by the HSM witness: %v, %v\n%s", cos, err, signed)
	}
	lp.stop(t, syscall.SIGTERM)

	for name, r := range map[string][]byte{"old": rOld, "both": rBoth, "new": rNew} {
		if out, code := verifyCLI(t, during, r); code != 0 {
			t.Errorf("receipt signed with the %s key(s), policy with both keys: exit %d\n%s", name, code, out)
		}
	}
	if out, code := verifyCLI(t, after, rOld); code != 1 || !strings.Contains(out, "RECEIPT REFUSED") {
		t.Errorf("old receipt with a new-key-only policy: exit %d\n%s", code, out)
	}
	if out, code := verifyCLI(t, after, rNew); code != 0 {
		t.Errorf("new receipt with a new-key-only policy: exit %d\n%s", code, out)
	}

	// Refusals: a wrong PIN, and a token key without the name it needs.
	bad := uri("log-2026", "&pin-value=0000")
	out, code := run(t, dir, "log", "--data", filepath.Join(dir, "other"), "--origin", "e2e.test/log", "--key", bad, "--listen", freeAddr(t))
	if code == 0 || !strings.Contains(out, "refused the PIN") || strings.Contains(out, "0000") {
		t.Errorf("log with a wrong PIN: exit %d\n%s", code, out)
	}
	out, code = run(t, dir, "log", "--data", filepath.Join(dir, "other"), "--key", newURI, "--listen", freeAddr(t))
	if code == 0 || !strings.Contains(out, "needs --origin") {
		t.Errorf("log with an HSM key and no --origin: exit %d\n%s", code, out)
	}
	out, code = run(t, dir, "witness", "--data", filepath.Join(dir, "w2"), "--key", wURI, "--init", "--logs", logs, "--listen", freeAddr(t))
	if code == 0 || !strings.Contains(out, "needs --name") {
		t.Errorf("witness with an HSM key and no --name: exit %d\n%s", code, out)
	}
}
