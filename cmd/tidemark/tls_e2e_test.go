package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/testpki"
)

// serverCert is a CA and a loopback server certificate it issued, in files.
type serverCert struct {
	ca                        *testpki.CA
	caFile, certFile, keyFile string
}

func newServerCert(t *testing.T, dir, name string) serverCert {
	t.Helper()
	ca := testpki.NewCA(t, name+" CA")
	certFile, keyFile := testpki.WriteKeyPair(t, dir, name, ca.Server(t))
	return serverCert{ca: ca, caFile: ca.WriteCert(t, dir, name+"-ca.pem"), certFile: certFile, keyFile: keyFile}
}

// httpsClient trusts only ca and presents certs; it opens a new connection
// for each request, so that each one sees the server's current certificate.
func httpsClient(ca *testpki.CA, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: testpki.ClientConfig(ca, certs...), DisableKeepAlives: true}}
}

// httpsServer is how startHTTPSServer starts a server subcommand.
type httpsServer struct {
	listen string // --listen (default: a free loopback address)
	admin  string // --admin-listen, polled for /healthz when set
}

// serverProcess is a server subcommand started by startHTTPSServer.
type serverProcess struct {
	cmd    *exec.Cmd
	addr   string // the loopback address to reach --listen on
	scheme string
	out    *lockedBuffer
}

func (p *serverProcess) url() string { return p.scheme + "://" + p.addr }

func (p *serverProcess) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("%s exited with %v after SIGTERM:\n%s", p.cmd.Args[1], err, p.out)
	}
}

// lockedBuffer is the output of a process, read while the process writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startHTTPSServer starts `tidemark SUBCOMMAND ARGS --listen ADDR`, kills it
// when the test ends, and waits until /healthz answers over HTTPS to a
// client that trusts only ca (over plain HTTP when ca is nil).
func startHTTPSServer(t *testing.T, subcommand string, args []string, ca *testpki.CA, o httpsServer) *serverProcess {
	t.Helper()
	if o.listen == "" {
		o.listen = freeAddr(t)
	}
	_, port, _ := net.SplitHostPort(o.listen)
	p := &serverProcess{addr: "127.0.0.1:" + port, scheme: "https", out: &lockedBuffer{}}
	hc := http.DefaultClient
	if ca != nil {
		hc = httpsClient(ca)
	} else {
		p.scheme = "http"
	}
	args = append(append([]string{subcommand}, args...), "--listen", o.listen)
	health := p.url() + "/healthz"
	if o.admin != "" {
		args = append(args, "--admin-listen", o.admin)
		health = p.scheme + "://" + o.admin + "/healthz"
	}
	p.cmd = exec.Command(tidemarkBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var code int
		if code, err = getStatus(hc, health); err == nil && code == http.StatusOK {
			return p
		}
	}
	t.Fatalf("tidemark %s did not answer %s (%v):\n%s", subcommand, health, err, p.out)
	return nil
}

// protoMajor returns the HTTP major version a client that offers HTTP/2
// gets from url.
func protoMajor(t *testing.T, ca *testpki.CA, url string) int {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: testpki.ClientConfig(ca), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.ProtoMajor
}

// getStatus GETs url and returns the status, or the transport's error.
func getStatus(hc *http.Client, url string) (int, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestTLSServersRotateCertificateOnSIGHUP: `log` and `witness` with
// --tls-cert and --tls-key serve HTTPS (TLS 1.2 at least) on --listen and
// --admin-listen; on SIGHUP a broken certificate file is refused and the old
// certificate stays, and a new certificate (from another CA) is taken: a
// client that trusts only the new CA then connects, one that trusts only the
// old one no longer does.
func TestTLSServersRotateCertificateOnSIGHUP(t *testing.T) {
	for _, sub := range []string{"log", "witness"} {
		t.Run(sub, func(t *testing.T) {
			dir := t.TempDir()
			old := newServerCert(t, dir, "old")
			certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
			copyFile(t, old.certFile, certFile)
			copyFile(t, old.keyFile, keyFile)
			args := []string{"--data", filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile}
			if sub == "witness" {
				_, vkey := writeLogKey(t, dir, "log")
				writeWitnessLogs(t, filepath.Join(dir, "logs"), vkey)
				args = append(args, "--name", "e2e.test/witness", "--logs", filepath.Join(dir, "logs"))
			} else {
				args = append(args, "--origin", "e2e.test/log")
			}
			admin := freeAddr(t)
			p := startHTTPSServer(t, sub, args, old.ca, httpsServer{admin: admin})
			public := map[string]string{"log": "/checkpoint", "witness": "/logs"}[sub]
			urls := []string{p.url() + public, "https://" + admin + "/metrics"}

			for _, u := range urls {
				if code, err := getStatus(httpsClient(old.ca), u); err != nil || code != 200 {
					t.Fatalf("GET %s over HTTPS: %d %v", u, code, err)
				}
			}
			if v := protoMajor(t, old.ca, urls[0]); v != 2 {
				t.Errorf("HTTP/%d, want HTTP/2 offered over TLS", v)
			}
			if code, err := getStatus(http.DefaultClient, "http://"+p.addr+public); err == nil && code == 200 {
				t.Errorf("plain HTTP on the HTTPS port was answered 200")
			}
			tls11 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: old.ca.Pool(), MaxVersion: tls.VersionTLS11}}}
			if _, err := getStatus(tls11, urls[0]); err == nil {
				t.Errorf("a TLS 1.1 client was served")
			}

			// A broken certificate: refused, the old one stays in force.
			os.WriteFile(certFile, []byte("not a certificate\n"), 0o644)
			p.cmd.Process.Signal(syscall.SIGHUP)
			waitFor(t, 30*time.Second, "the failed reload to be logged", func() bool {
				return strings.Contains(p.out.String(), "TLS certificate not reloaded; the previous one stays in force")
			})
			if code, err := getStatus(httpsClient(old.ca), urls[0]); err != nil || code != 200 {
				t.Errorf("after a failed reload, the old certificate: %d %v", code, err)
			}

			// A new certificate from another CA.
			next := newServerCert(t, dir, "new")
			copyFile(t, next.certFile, certFile)
			copyFile(t, next.keyFile, keyFile)
			p.cmd.Process.Signal(syscall.SIGHUP)
			for _, u := range urls {
				waitFor(t, 30*time.Second, u+" to serve the new certificate", func() bool {
					code, err := getStatus(httpsClient(next.ca), u)
					return err == nil && code == 200
				})
				if _, err := getStatus(httpsClient(old.ca), u); err == nil || !strings.Contains(err.Error(), "unknown authority") {
					t.Errorf("GET %s trusting only the old CA after the rotation: %v, want unknown authority", u, err)
				}
			}
			p.stop(t)
		})
	}
}

// TestTLSStartRefusesBadFlagsAndFiles: TLS flags that do not go together and
// files that are not what they should be fail the start with a message that
// says what to give, before the server creates its key or state.
func TestTLSStartRefusesBadFlagsAndFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := newServerCert(t, dir, "a"), newServerCert(t, dir, "b")
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"log: cert without key", []string{"log", "--tls-cert", a.certFile}, 2, "--tls-cert and --tls-key go together"},
		{"witness: key without cert", []string{"witness", "--logs", notPEM, "--tls-key", a.keyFile}, 2, "--tls-cert and --tls-key go together"},
		{"log: client CA without a certificate", []string{"log", "--tls-client-ca", a.caFile}, 2, "--tls-client-ca needs --tls-cert and --tls-key"},
		{"log: key of another certificate", []string{"log", "--tls-cert", a.certFile, "--tls-key", b.keyFile}, 1, "couldn't load the TLS certificate"},
		{"witness: key of another certificate", []string{"witness", "--logs", notPEM, "--tls-cert", a.certFile, "--tls-key", b.keyFile}, 1, "private key does not match"},
		{"log: client CA not PEM", []string{"log", "--tls-cert", a.certFile, "--tls-key", a.keyFile, "--tls-client-ca", notPEM}, 1, "--tls-client-ca " + notPEM + ": certificate 1: not PEM"},
		{"log: CA not PEM", []string{"log", "--tls-ca", notPEM}, 2, "--tls-ca: " + notPEM},
		{"witness: CA missing", []string{"witness", "--logs", notPEM, "--tls-ca", filepath.Join(dir, "missing.pem")}, 2, "--tls-ca: couldn't read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			out, code := run(t, dir, append(tc.args, "--data", data, "--listen", freeAddr(t))...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d saying %q:\n%s", code, tc.code, tc.want, out)
			}
			if _, err := os.Stat(data); err == nil {
				t.Errorf("the failed start created %s", data)
			}
		})
	}
}

// TestTLSClientCertificateNamesTheSource drives the kube-apiserver flow with
// the real binaries: a log with --tls-client-ca and no tokens starts on a
// non-loopback address; `tidemark submit` with --tls-ca and a client
// certificate writes, and the leaf's source is the certificate's CN; without
// a certificate the write is a 401 that asks for one; without --tls-ca
// submit fails at once saying to give it; after the writers' CA file is
// replaced and SIGHUP sent, certificates of the new CA write.
func TestTLSClientCertificateNamesTheSource(t *testing.T) {
	dir := t.TempDir()
	server := newServerCert(t, dir, "server")
	writers := testpki.NewCA(t, "writers CA")
	writersFile := writers.WriteCert(t, dir, "writers.pem")
	kubeCert, kubeKey := testpki.WriteKeyPair(t, dir, "kube", writers.Client(t, "kube-apiserver"))
	data := filepath.Join(dir, "data")

	_, port, _ := net.SplitHostPort(freeAddr(t))
	lp := startHTTPSServer(t, "log", []string{"--data", data, "--origin", "e2e.test/log",
		"--tls-cert", server.certFile, "--tls-key", server.keyFile, "--tls-client-ca", writersFile},
		server.ca, httpsServer{listen: "0.0.0.0:" + port})
	if strings.Contains(lp.out.String(), "WRITES ARE OPEN") {
		t.Errorf("the log says writes are open:\n%s", lp.out)
	}
	if v := protoMajor(t, server.ca, lp.url()+"/checkpoint"); v != 2 {
		t.Errorf("HTTP/%d, want HTTP/2 offered with client certificates asked for too", v)
	}

	out, code := submitCLI(t, `{"action":"secret.read"}`, "--log", lp.url(), "--wait",
		"--tls-ca", server.caFile, "--tls-cert", kubeCert, "--tls-key", kubeKey)
	if code != 0 {
		t.Fatalf("submit with a client certificate: exit %d\n%s", code, out)
	}
	if src := receiptSource(t, out); src != "kube-apiserver" {
		t.Errorf("leaf source %q, want the certificate's CN kube-apiserver", src)
	}

	// The apiserver's own request: an EventList over TLS with its certificate.
	list, err := os.ReadFile("../../log/testdata/k8s/blocking-eventlist.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpsClient(server.ca, writers.Client(t, "kube-apiserver")).Post(lp.url()+"/v1/k8s/audit", "application/json", bytes.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST /v1/k8s/audit with the client certificate: %d %s", resp.StatusCode, body)
	}

	out, code = submitCLI(t, `{}`, "--log", lp.url(), "--tls-ca", server.caFile)
	if code == 0 || !strings.Contains(out, "401") || !strings.Contains(out, "needs a TLS client certificate") {
		t.Errorf("submit without a certificate or a token: exit %d, want a 401 asking for a client certificate:\n%s", code, out)
	}
	out, code = submitCLI(t, `{}`, "--log", lp.url(), "--tls-cert", kubeCert, "--tls-key", kubeKey)
	if code == 0 || !strings.Contains(out, "certificate signed by unknown authority") || !strings.Contains(out, "--tls-ca FILE") {
		t.Errorf("submit without --tls-ca: exit %d, want an unknown authority saying to give --tls-ca:\n%s", code, out)
	}
	if strings.Contains(out, "gave up after") {
		t.Errorf("submit retried a certificate error:\n%s", out)
	}

	// Rotate the writers' CA.
	writers2 := testpki.NewCA(t, "writers CA 2")
	os.WriteFile(writersFile, writers2.PEM(), 0o644)
	lp.cmd.Process.Signal(syscall.SIGHUP)
	ciCert, ciKey := testpki.WriteKeyPair(t, dir, "ci", writers2.Client(t, "ci"))
	waitFor(t, 30*time.Second, "the new writers' CA to be loaded", func() bool {
		return strings.Count(lp.out.String(), "TLS certificate loaded") >= 2
	})
	out, code = submitCLI(t, `{"action":"deploy"}`, "--log", lp.url(), "--wait", "--tls-ca", server.caFile, "--tls-cert", ciCert, "--tls-key", ciKey)
	if code != 0 || receiptSource(t, out) != "ci" {
		t.Errorf("a certificate of the new writers' CA after SIGHUP: exit %d\n%s", code, out)
	}
	out, code = submitCLI(t, `{}`, "--log", lp.url(), "--tls-ca", server.caFile, "--tls-cert", kubeCert, "--tls-key", kubeKey)
	if code == 0 || !strings.Contains(out, "401") {
		t.Errorf("a certificate of the retired writers' CA after SIGHUP: exit %d, want 401:\n%s", code, out)
	}
	lp.stop(t)

	var sources []string
	for _, b := range readLeaves(t, data) {
		l, err := checkpoint.ParseLeaf(b)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, l.Source)
	}
	if got, want := strings.Join(sources, " "), "kube-apiserver kube-apiserver ci"; got != want {
		t.Errorf("sources of the leaves: %s, want %s", got, want)
	}
}

// receiptSource returns the source of the leaf in a receipt that `tidemark
// submit --wait` printed.
func receiptSource(t *testing.T, out string) string {
	t.Helper()
	var r struct{ Leaf []byte }
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		t.Fatalf("not a receipt: %v\n%s", err, out)
	}
	l, err := checkpoint.ParseLeaf(r.Leaf)
	if err != nil {
		t.Fatalf("receipt leaf: %v", err)
	}
	return l.Source
}

// TestTLSWitnessedByHTTPSWitness: a log asks an HTTPS witness to cosign,
// trusting the witness's CA with --tls-ca; receipts are witnessed and verify
// with the policy, and `tidemark audit --tls-ca` verifies the HTTPS log and
// gossips with the HTTPS witness. Without --tls-ca the log cannot get a
// cosignature and says why, and audit cannot fetch and says what to give.
func TestTLSWitnessedByHTTPSWitness(t *testing.T) {
	dir := t.TempDir()
	certs := newServerCert(t, dir, "servers")
	keyFile, vkey := writeLogKey(t, dir, "log")
	logs := filepath.Join(dir, "witness-logs")
	writeWitnessLogs(t, logs, vkey)
	wp := startHTTPSServer(t, "witness", []string{"--data", filepath.Join(dir, "witness"), "--name", "e2e.test/w1",
		"--logs", logs, "--tls-cert", certs.certFile, "--tls-key", certs.keyFile}, certs.ca, httpsServer{})
	wvkey := strings.TrimSpace(readFile(t, filepath.Join(dir, "witness", "witness.pub")))
	logAddr := freeAddr(t)
	policy := filepath.Join(dir, "policy")
	os.WriteFile(policy, []byte(fmt.Sprintf("log %s https://%s\nwitness w1 %s %s\ngroup g 1 w1\nquorum g\n", vkey, logAddr, wvkey, wp.url())), 0o644)
	logArgs := append([]string{"--data", filepath.Join(dir, "data"), "--key", keyFile, "--policy", policy,
		"--tls-cert", certs.certFile, "--tls-key", certs.keyFile}, fastWitnessing...)

	// Without the witnesses' CA: no cosignature, and the log says why.
	noCA := exec.Command(tidemarkBin, append(append([]string{"log"}, logArgs...), "--listen", logAddr)...)
	noCAOut := &lockedBuffer{}
	noCA.Stdout, noCA.Stderr = noCAOut, noCAOut
	if err := noCA.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { noCA.Wait(); close(exited) }()
	waitFor(t, 30*time.Second, "the log to report the witness's unknown CA", func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		return strings.Contains(noCAOut.String(), "witness did not cosign") && strings.Contains(noCAOut.String(), "certificate signed by unknown authority")
	})
	noCA.Process.Kill()
	<-exited
	if !strings.Contains(noCAOut.String(), "certificate signed by unknown authority") {
		t.Fatalf("the log without --tls-ca did not say the witness's certificate is from an unknown authority:\n%s", noCAOut.String())
	}

	lp := startHTTPSServer(t, "log", append(logArgs, "--tls-ca", certs.caFile), certs.ca, httpsServer{listen: logAddr})
	out, code := submitCLI(t, `{"action":"secret.read"}`, "--log", lp.url(), "--wait", "--tls-ca", certs.caFile)
	if code != 0 {
		t.Fatalf("submit --wait: exit %d\n%s\nlog:\n%s", code, out, tail([]byte(lp.out.String()), 20))
	}
	receipt := []byte(strings.TrimSpace(out))
	if names := cosignersOf(t, policy, receipt); len(names) != 1 || names[0] != "w1" {
		t.Errorf("receipt cosigned by %v, want the HTTPS witness w1", names)
	}
	if out, code := verifyCLI(t, policy, receipt); code != 0 {
		t.Errorf("tidemark verify: exit %d\n%s", code, out)
	}

	out, code = audit(t, "--policy", policy, "--tls-ca", certs.caFile)
	if code != 0 || !strings.Contains(out, "result: verified") || strings.Contains(out, "couldn't get") {
		t.Errorf("audit --tls-ca of the HTTPS log and witness: exit %d\n%s", code, out)
	}
	out, code = audit(t, "--policy", policy)
	if code != 2 || !strings.Contains(out, "unknown authority") || !strings.Contains(out, "--tls-ca FILE") {
		t.Errorf("audit without --tls-ca: exit %d, want 2 saying to give --tls-ca:\n%s", code, out)
	}
	lp.stop(t)
}

// TestTLSWitnessFollowsHTTPSLog: a witness with --tls-ca polls an HTTPS log
// it follows and cosigns its checkpoint; one without it cannot, and logs
// that the certificate is from an unknown authority.
func TestTLSWitnessFollowsHTTPSLog(t *testing.T) {
	dir := t.TempDir()
	certs := newServerCert(t, dir, "log")
	data := filepath.Join(dir, "data")
	lp := startHTTPSServer(t, "log", []string{"--data", data, "--origin", "e2e.test/log",
		"--tls-cert", certs.certFile, "--tls-key", certs.keyFile}, certs.ca, httpsServer{})
	vkey := strings.TrimSpace(readFile(t, filepath.Join(data, "log.pub")))
	follow := filepath.Join(dir, "follow")
	os.WriteFile(follow, []byte("log "+vkey+" "+lp.url()+"\n"), 0o644)

	witness := func(name string, extra ...string) *serverProcess {
		return startHTTPSServer(t, "witness", append([]string{"--data", filepath.Join(dir, name), "--name", "e2e.test/" + name,
			"--follow", follow, "--poll-interval", "200ms"}, extra...), nil, httpsServer{})
	}
	trusting := witness("trusting", "--tls-ca", certs.caFile)
	other := witness("other")
	h := sha256.Sum256([]byte("e2e.test/log"))
	cosigned := trusting.url() + "/" + hex.EncodeToString(h[:]) + "/checkpoint"
	waitFor(t, 30*time.Second, "the witness with --tls-ca to cosign the HTTPS log", func() bool {
		code, err := getStatus(http.DefaultClient, cosigned)
		return err == nil && code == 200
	})
	waitFor(t, 30*time.Second, "the witness without --tls-ca to report the log's unknown CA", func() bool {
		return strings.Contains(other.out.String(), "couldn't poll a followed log") && strings.Contains(other.out.String(), "unknown authority")
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
