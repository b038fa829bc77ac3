package log

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/testpki"
	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
)

// tlsFront serves a test log's handler over HTTPS as `tidemark log
// --tls-client-ca` does: client certificates requested, not required, and
// verified against the writers' CA when presented.
type tlsFront struct {
	t        *testing.T
	tl       *testLog
	hs       *httptest.Server
	serverCA *testpki.CA
}

func newTLSFront(t *testing.T, tl *testLog, writers *testpki.CA) *tlsFront {
	t.Helper()
	serverCA := testpki.NewCA(t, "server CA")
	hs := httptest.NewUnstartedServer(tl.s.Handler(true))
	hs.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCA.Server(t)},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    writers.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return &tlsFront{t: t, tl: tl, hs: hs, serverCA: serverCA}
}

// request sends a request over HTTPS, presenting certs (none, or one client
// certificate), and returns the answer or the transport's error.
func (f *tlsFront) request(method, path, contentType string, body []byte, certs []tls.Certificate, header ...string) (response, error) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.hs.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	tr := &http.Transport{TLSClientConfig: testpki.ClientConfig(f.serverCA, certs...)}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{resp.StatusCode, resp.Header, b}, nil
}

// post sends a write that must get an answer, and returns it.
func (f *tlsFront) post(path, contentType string, body []byte, certs []tls.Certificate, header ...string) response {
	f.t.Helper()
	r, err := f.request(http.MethodPost, path, contentType, body, certs, header...)
	if err != nil {
		f.t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

// sourceOf returns the source of the leaf at index.
func (tl *testLog) sourceOf(index uint64) string {
	tl.t.Helper()
	leaves := tl.leaves()
	if index >= uint64(len(leaves)) {
		tl.t.Fatalf("no leaf %d in a log of %d", index, len(leaves))
	}
	l, err := checkpoint.ParseLeaf(leaves[index])
	if err != nil {
		tl.t.Fatalf("leaf %d: %v", index, err)
	}
	return l.Source
}

func indexOf(t *testing.T, r response) uint64 {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("write refused: %d %s", r.status, r.body)
	}
	var res struct {
		Index   uint64
		Results []eventResult
	}
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatalf("answer %s: %v", r.body, err)
	}
	if len(res.Results) > 0 {
		return res.Results[0].Index
	}
	return res.Index
}

// TestTLSClientCertificateAuthenticatesWriters: with ClientCertWriters, a
// verified client certificate's subject common name is the source of the
// leaves on every write path, and wins over a token; a write without one
// falls back to the tokens; a certificate whose name cannot be a source is a
// 403; a certificate from a CA the log does not trust fails the handshake,
// while reads without a certificate still work.
func TestTLSClientCertificateAuthenticatesWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte(TokenLine("deploy-bot", "s3cret")+"\n"), 0o600)
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	tl := newTestLog(t, func(c *Config) { c.Tokens = tokens; c.ClientCertWriters = true })
	writers := testpki.NewCA(t, "writers CA")
	f := newTLSFront(t, tl, writers)
	kube := []tls.Certificate{writers.Client(t, "kube-apiserver")}

	idx := indexOf(t, f.post("/v1/events", "application/json", []byte(`{"action":"secret.read"}`), kube))
	if got := tl.sourceOf(idx); got != "kube-apiserver" {
		t.Errorf("/v1/events with a client certificate: source %q, want the certificate's CN kube-apiserver", got)
	}
	idx = indexOf(t, f.post("/v1/events", "application/json", []byte(`{"action":"both"}`), kube, "Authorization", "Bearer s3cret"))
	if got := tl.sourceOf(idx); got != "kube-apiserver" {
		t.Errorf("certificate and token: source %q, want the certificate's kube-apiserver", got)
	}
	idx = indexOf(t, f.post("/v1/k8s/audit", "application/json", readFixture(t, "k8s/blocking-eventlist.json"), kube))
	if got := tl.sourceOf(idx); got != "kube-apiserver" {
		t.Errorf("/v1/k8s/audit: source %q, want kube-apiserver", got)
	}
	otlp := otlpRequest(t, &logsv1.LogRecord{Body: str("user alice read a secret")})
	if r := f.post("/v1/logs", "application/x-protobuf", otlp, kube); r.status != http.StatusOK {
		t.Errorf("/v1/logs with a client certificate: %d %s", r.status, r.body)
	} else if got := tl.sourceOf(tl.size() - 1); got != "kube-apiserver" {
		t.Errorf("/v1/logs: source %q, want kube-apiserver", got)
	}
	if r := f.post("/add", "", []byte("raw entry"), kube); r.status != http.StatusOK {
		t.Errorf("/add with a client certificate: %d %s", r.status, r.body)
	}
	// No certificate: the token, as before.
	idx = indexOf(t, f.post("/v1/events", "application/json", []byte(`{}`), nil, "Authorization", "Bearer s3cret"))
	if got := tl.sourceOf(idx); got != "deploy-bot" {
		t.Errorf("token without a certificate: source %q, want deploy-bot", got)
	}

	size := tl.size()
	refusals := []struct {
		name   string
		path   string
		certs  []tls.Certificate
		header []string
		status int
		want   string
	}{
		{"no certificate, no token", "/v1/events", nil, nil, 401, "client certificate or a bearer token"},
		{"no certificate, no token, /add", "/add", nil, nil, 401, "client certificate"},
		{"no certificate, unknown token", "/v1/events", nil, []string{"Authorization", "Bearer nope"}, 403, "token"},
		{"a CN that is no source name", "/v1/events", []tls.Certificate{writers.Client(t, "kube apiserver!")}, nil, 403, `common name "kube apiserver!"`},
		{"an empty CN", "/v1/events", []tls.Certificate{writers.Client(t, "")}, nil, 403, "common name"},
		{"two CNs", "/v1/events", []tls.Certificate{twoCommonNames(t, writers)}, nil, 403, "2 common names"},
		{"a bad CN with a good token", "/v1/k8s/audit", []tls.Certificate{writers.Client(t, "a b")}, []string{"Authorization", "Bearer s3cret"}, 403, "common name"},
		// A certificate named like a token would write as that token's
		// writer, and find its idempotency keys.
		{"a CN that is a token's name", "/v1/events", []tls.Certificate{writers.Client(t, "deploy-bot")}, nil, 403, "also the name of a token"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			r := f.post(tc.path, "application/json", []byte(`{"kind":"EventList","items":[]}`), tc.certs, tc.header...)
			var e struct{ Error string }
			json.Unmarshal(r.body, &e)
			if r.status != tc.status || !strings.Contains(e.Error, tc.want) {
				t.Errorf("%d %s, want %d saying %q", r.status, r.body, tc.status, tc.want)
			}
		})
	}

	// A certificate from a CA the log does not trust for writers. A Go
	// client (the kube-apiserver is one) presents only a certificate from
	// a CA the server lists in its request, so it sends none: 401.
	stranger := []tls.Certificate{testpki.NewCA(t, "another CA").Client(t, "kube-apiserver")}
	if r := f.post("/v1/events", "application/json", []byte(`{}`), stranger); r.status != 401 {
		t.Errorf("a Go client holding only a certificate from another CA: %d %s, want 401", r.status, r.body)
	}
	// A client that presents it anyway fails the TLS handshake: the server
	// verifies any certificate presented.
	req, _ := http.NewRequest(http.MethodPost, f.hs.URL+"/v1/events", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	cfg := testpki.ClientConfig(f.serverCA)
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger[0], nil }
	if resp, err := (&http.Transport{TLSClientConfig: cfg}).RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate from another CA presented anyway was answered %d, want a failed handshake", resp.StatusCode)
	} else if !strings.Contains(err.Error(), "tls: unknown certificate authority") {
		t.Errorf("a certificate from another CA presented anyway: %v, want the alert \"unknown certificate authority\"", err)
	}
	// Reads need no certificate: witnesses and auditors fetch them.
	for _, p := range []string{"/checkpoint", "/v1/policy"} {
		if r, err := f.request(http.MethodGet, p, "", nil, nil); err != nil || r.status != http.StatusOK {
			t.Errorf("GET %s without a certificate: %v %d", p, err, r.status)
		}
	}
	if n := tl.size(); n != size {
		t.Errorf("refused writes appended %d entries", n-size)
	}
}

// TestTLSClientCertificatesWithoutTokens: with ClientCertWriters and no
// tokens, writes are not open: a write without a certificate, over HTTPS
// or plain HTTP, is a 401 saying a client certificate is required.
func TestTLSClientCertificatesWithoutTokens(t *testing.T) {
	tl := newTestLog(t, func(c *Config) { c.ClientCertWriters = true })
	writers := testpki.NewCA(t, "writers CA")
	f := newTLSFront(t, tl, writers)
	if r := f.post("/v1/events", "application/json", []byte(`{}`), nil); r.status != 401 || !strings.Contains(string(r.body), "needs a TLS client certificate") {
		t.Errorf("HTTPS without a certificate: %d %s, want 401 asking for a client certificate", r.status, r.body)
	}
	if r := tl.post("/v1/events", "application/json", []byte(`{}`)); r.status != 401 || !strings.Contains(string(r.body), "needs a TLS client certificate") {
		t.Errorf("plain HTTP: %d %s, want 401 asking for a client certificate", r.status, r.body)
	}
	idx := indexOf(t, f.post("/v1/events", "application/json", []byte(`{}`), []tls.Certificate{writers.Client(t, "ci@example.com/deploy:1")}))
	if got := tl.sourceOf(idx); got != "ci@example.com/deploy:1" {
		t.Errorf("source %q, want the CN ci@example.com/deploy:1", got)
	}
}

// TestTLSClientCertificateIgnoredUnlessConfigured: without
// ClientCertWriters a verified certificate names nobody; writes are open on
// this log, so the source is OpenSource.
func TestTLSClientCertificateIgnoredUnlessConfigured(t *testing.T) {
	tl := newTestLog(t, nil)
	writers := testpki.NewCA(t, "writers CA")
	f := newTLSFront(t, tl, writers)
	idx := indexOf(t, f.post("/v1/events", "application/json", []byte(`{}`), []tls.Certificate{writers.Client(t, "kube-apiserver")}))
	if got := tl.sourceOf(idx); got != OpenSource {
		t.Errorf("source %q, want %q: the log was not told to trust client certificates", got, OpenSource)
	}
}

// twoCommonNames issues a client certificate whose subject has two CNs.
func twoCommonNames(t *testing.T, ca *testpki.CA) tls.Certificate {
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	return ca.Issue(t, &x509.Certificate{
		Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: cn, Value: "deploy-bot"}, {Type: cn, Value: "kube-apiserver"},
		}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}
