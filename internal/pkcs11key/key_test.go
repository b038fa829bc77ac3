package pkcs11key_test

import (
	"crypto"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/pkcs11key"
	"github.com/tidemark/tidemark/internal/testhsm"
)

func TestParseURI(t *testing.T) {
	u, err := pkcs11key.ParseURI("pkcs11:token=my%20token;object=log-key;id=%01%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin")
	if err != nil {
		t.Fatal(err)
	}
	if u.Token != "my token" || u.Object != "log-key" || string(u.ID) != "\x01\x02" || u.Type != "private" ||
		u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" || u.PINSource != "file:/etc/pin" {
		t.Fatalf("parsed %+v", u)
	}
	for _, bad := range []string{
		"token=x;object=y?module-path=/m.so",                 // no scheme
		"pkcs11:token=x?module-path=/m.so",                   // no key
		"pkcs11:token=x;object=y",                            // no module
		"pkcs11:token=x;objekt=y?module-path=/m.so",          // misspelt
		"pkcs11:token=x;object=y?module-path=/m.so&pin=1",    // unknown query attribute
		"pkcs11:token=x;object=y;object=z?module-path=/m.so", // twice
		"pkcs11:token=x;object=y;module-path=/m.so",          // query attribute in the path
		"pkcs11:object=y?module-path=/m.so&pin-value=1&pin-source=file:/p",
	} {
		if _, err := pkcs11key.ParseURI(bad); err == nil {
			t.Errorf("ParseURI(%q) accepted it", bad)
		}
	}
	if s := mustParse(t, "pkcs11:object=k?module-path=/m.so&pin-value=secret").String(); strings.Contains(s, "secret") {
		t.Errorf("String() shows the PIN: %s", s)
	}
}

func mustParse(t *testing.T, s string) *pkcs11key.URI {
	t.Helper()
	u, err := pkcs11key.ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestPINSources(t *testing.T) {
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(pkcs11key.PINEnv, "from-env")
	for uri, want := range map[string]string{
		"pkcs11:object=k?module-path=/m.so&pin-value=from-uri":         "from-uri",
		"pkcs11:object=k?module-path=/m.so&pin-source=file:" + pinFile: "from-file",
		"pkcs11:object=k?module-path=/m.so&pin-source=" + pinFile:      "from-file",
		"pkcs11:object=k?module-path=/m.so":                            "from-env",
	} {
		got, err := mustParse(t, uri).PIN()
		if err != nil || got != want {
			t.Errorf("%s: PIN %q, %v; want %q", uri, got, err, want)
		}
	}
	t.Setenv(pkcs11key.PINEnv, "")
	if _, err := mustParse(t, "pkcs11:object=k?module-path=/m.so").PIN(); err == nil || !strings.Contains(err.Error(), pkcs11key.PINEnv) {
		t.Errorf("no PIN: %v", err)
	}
}

// The tokens of this process, made before the module is first loaded.
var tokens struct{ main, wrongPIN string }

func hsm(t *testing.T) {
	t.Helper()
	if !pkcs11key.Supported {
		t.Skip("built without cgo")
	}
	if tokens.main == "" {
		tokens.main, tokens.wrongPIN = testhsm.Token(t), testhsm.Token(t)
	}
}

func TestLogCheckpointSignedInTheToken(t *testing.T) {
	hsm(t)
	uri := testhsm.URI(tokens.main, "log-key")
	k, err := pkcs11key.Generate(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if _, err := pkcs11key.Generate(uri); err == nil {
		t.Fatal("Generate made a second key with the same label")
	}
	// Opened again, as a log start does.
	k2, err := pkcs11key.Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if !k2.Public().(ed25519.PublicKey).Equal(k.Public()) {
		t.Fatal("Open read another public key than Generate made")
	}
	signer, vkey, err := checkpoint.NewLogSignerFrom("hsm.test/log", k2)
	if err != nil {
		t.Fatal(err)
	}
	v, err := checkpoint.NewLogVerifier(vkey)
	if err != nil {
		t.Fatalf("the derived vkey %s: %v", vkey, err)
	}
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "hsm.test/log", Size: 3, Hash: make([]byte, 32)}, signer)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := checkpoint.Open(signed, v)
	if err != nil {
		t.Fatalf("checkpoint.Open: %v\n%s", err, signed)
	}
	if got.Size != 3 {
		t.Fatalf("opened size %d", got.Size)
	}
	if _, err := k2.Sign(nil, []byte("x"), crypto.SHA256); err == nil {
		t.Error("Sign with a hash: accepted")
	}
}

func TestWitnessCosignatureSignedInTheToken(t *testing.T) {
	hsm(t)
	k, err := pkcs11key.Generate(testhsm.URI(tokens.main, "witness-key"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	signer, vkey, err := checkpoint.NewWitnessSignerFrom("hsm.test/witness", k)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := checkpoint.NewWitnessVerifier(vkey)
	if err != nil {
		t.Fatalf("the derived vkey %s: %v", vkey, err)
	}
	skey, logVKey, _ := checkpoint.GenerateLogKey("hsm.test/log")
	logSigner, _ := checkpoint.NewLogSigner(skey)
	lv, _ := checkpoint.NewLogVerifier(logVKey)
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "hsm.test/log", Size: 5, Hash: make([]byte, 32)}, logSigner, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := checkpoint.Open(signed, lv); err != nil {
		t.Fatal(err)
	}
	cos, err := checkpoint.Cosignatures(signed, wv)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cos[checkpoint.KeyID(wv)]; !ok || len(cos) != 1 {
		t.Fatalf("Cosignatures found %d verified cosignatures, want 1:\n%s", len(cos), signed)
	}
}

func TestWrongPIN(t *testing.T) {
	hsm(t)
	k, err := pkcs11key.Generate(testhsm.URI(tokens.wrongPIN, "k"))
	if err != nil {
		t.Fatal(err)
	}
	// A PKCS#11 login belongs to the process, not the session: closing the
	// token's last session ends it, and then the PIN is checked again.
	k.Close()
	_, err = pkcs11key.Open(strings.Replace(testhsm.URI(tokens.wrongPIN, "k"), "pin-value="+testhsm.PIN, "pin-value=9999", 1))
	if err == nil || !strings.Contains(err.Error(), "refused the PIN") || strings.Contains(err.Error(), "9999") {
		t.Fatalf("wrong PIN: %v", err)
	}
	_, err = pkcs11key.Open(testhsm.URI("no-such-token", "k"))
	if err == nil || !strings.Contains(err.Error(), "no token matches") {
		t.Fatalf("no such token: %v", err)
	}
	_, err = pkcs11key.Open(testhsm.URI(tokens.wrongPIN, "no-such-key"))
	if err == nil || !strings.Contains(err.Error(), "no Ed25519") {
		t.Fatalf("no such key: %v", err)
	}
}
