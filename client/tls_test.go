package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testpki"
)

// tlsLog is an HTTPS fake log that verifies client certificates against
// writers' CA (as clientAuth says), answers 200 to every request, and keeps
// the last client certificate's CN, so the test sees what the server saw.
type tlsLog struct {
	hs          *httptest.Server
	serverCA    *testpki.CA
	connections atomic.Int32
	lastCN      atomic.Value
}

func newTLSLog(t *testing.T, writers *testpki.CA, clientAuth tls.ClientAuthType) *tlsLog {
	t.Helper()
	l := &tlsLog{serverCA: testpki.NewCA(t, "server CA")}
	l.hs = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := ""
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			cn = r.TLS.VerifiedChains[0][0].Subject.CommonName
		}
		l.lastCN.Store(cn)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"index":3}`))
	}))
	l.hs.TLS = &tls.Config{
		Certificates: []tls.Certificate{l.serverCA.Server(t)},
		ClientAuth:   clientAuth,
		ClientCAs:    writers.Pool(),
	}
	l.hs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			l.connections.Add(1)
		}
	}
	l.hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	l.hs.StartTLS()
	t.Cleanup(l.hs.Close)
	return l
}

// TestTLSRootCAsAndClientCertificate: Options.RootCAs (from CertPool) lets
// the client trust a log's private CA, and Options.Certificate is presented
// as the client certificate that names the writer.
func TestTLSRootCAsAndClientCertificate(t *testing.T) {
	writers := testpki.NewCA(t, "writers CA")
	l := newTLSLog(t, writers, tls.VerifyClientCertIfGiven)
	pool, err := CertPool(l.serverCA.WriteCert(t, t.TempDir(), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert := writers.Client(t, "payments-api")
	c, err := New(l.hs.URL, &Options{RootCAs: pool, Certificate: &cert})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Submit(context.Background(), map[string]string{"action": "secret.read"})
	if err != nil || res.Index != 3 {
		t.Fatalf("Submit over HTTPS with the log's CA: %+v, %v", res, err)
	}
	if cn, _ := l.lastCN.Load().(string); cn != "payments-api" {
		t.Errorf("the log saw the client certificate %q, want payments-api", cn)
	}
}

// TestTLSUntrustedLogFailsAtOnce: without the log's CA, Submit fails with
// the certificate verification error, after one attempt: retrying cannot
// make a certificate trusted.
func TestTLSUntrustedLogFailsAtOnce(t *testing.T) {
	l := newTLSLog(t, testpki.NewCA(t, "writers CA"), tls.VerifyClientCertIfGiven)
	c, err := New(l.hs.URL, &Options{MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Submit(context.Background(), map[string]string{"a": "b"})
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("Submit to a log with an unknown CA: %v, want a *tls.CertificateVerificationError", err)
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("error %v does not say the authority is unknown", err)
	}
	if n := l.connections.Load(); n != 1 {
		t.Errorf("%d connections, want 1: a certificate error is not retried", n)
	}
}

// TestTLSRefusedHandshakeFailsAtOnce: a log that requires a client
// certificate refuses the handshake of a client without one; the client
// returns the alert after one attempt.
func TestTLSRefusedHandshakeFailsAtOnce(t *testing.T) {
	l := newTLSLog(t, testpki.NewCA(t, "writers CA"), tls.RequireAndVerifyClientCert)
	c, err := New(l.hs.URL, &Options{RootCAs: l.serverCA.Pool(), MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Submit(context.Background(), map[string]string{"a": "b"})
	if err == nil || !strings.Contains(err.Error(), "remote error: tls: certificate required") {
		t.Fatalf("Submit without the certificate the log requires: %v, want the log's alert", err)
	}
	if n := l.connections.Load(); n != 1 {
		t.Errorf("%d connections, want 1: a refused handshake is not retried", n)
	}
}

func TestTLSOptionsWithOwnHTTPClientRefused(t *testing.T) {
	pool := x509.NewCertPool()
	if _, err := New("https://log.example", &Options{HTTPClient: &http.Client{}, RootCAs: pool}); err == nil || !strings.Contains(err.Error(), "TLSClientConfig") {
		t.Errorf("New with HTTPClient and RootCAs: %v, want an error saying where RootCAs goes", err)
	}
}

func TestTLSCertPoolIsStrict(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	good := string(ca.PEM())
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "", "no PEM certificate"},
		{"not PEM", "hello\n", "not PEM"},
		{"a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `"PRIVATE KEY"`},
		{"trailing junk", good + "junk\n", "certificate 2: not PEM"},
		{"bad DER", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		os.WriteFile(path, []byte(tc.content), 0o644)
		if _, err := CertPool(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	path := filepath.Join(dir, "two")
	os.WriteFile(path, []byte(good+"\n"+string(testpki.NewCA(t, "other").PEM())), 0o644)
	if _, err := CertPool(path); err != nil {
		t.Errorf("two certificates: %v", err)
	}
	if _, err := CertPool(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file gave no error")
	}
}
