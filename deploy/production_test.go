package deploy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testpki"
)

// The production layout's two roots; the test stands a temporary directory
// in for /, one per host.
const (
	etcRoot = "/etc/tidemark/"
	varRoot = "/var/lib/tidemark/"
)

// host is one machine of the production layout: a directory standing in for
// its /, under which /etc/tidemark and /var/lib/tidemark live.
type host struct {
	t    *testing.T
	root string
}

func newHost(t *testing.T, name string) *host {
	return &host{t: t, root: filepath.Join(t.TempDir(), name)}
}

// path maps an absolute production path to the host's root.
func (h *host) path(p string) string { return filepath.Join(h.root, p) }

// rewrite maps a value naming a production path to the host's root.
func (h *host) rewrite(v string) string {
	if strings.HasPrefix(v, etcRoot) || strings.HasPrefix(v, varRoot) {
		return h.path(v)
	}
	return v
}

func (h *host) write(p, content string, mode os.FileMode) {
	h.t.Helper()
	writeFile(h.t, h.path(p), []byte(content), mode)
}

// service is a unit's command and environment, as systemd would run it on
// the host, with the paths under the host's root and each *_LISTEN
// variable on a free loopback port.
type service struct {
	name   string
	args   []string          // after the binary
	env    map[string]string // TIDEMARK_ variables only
	listen map[string]string // the *_LISTEN variables and their new addresses
}

// prepare reads deploy/systemd/NAME: ExecStart=, Environment= and then
// EnvironmentFile= (read from the host, as systemd does at each start),
// and makes the StateDirectory= and ConfigurationDirectory= (0700, 0755).
func (h *host) prepare(name string) *service {
	t := h.t
	t.Helper()
	u := parseUnit(t, filepath.Join("systemd", name))
	s := &service{name: name, env: map[string]string{}, listen: map[string]string{}}

	execStart := strings.TrimLeft(u.one(t, name, "Service", "ExecStart"), "-@:+!")
	fields := strings.Fields(execStart)
	if len(fields) < 2 || fields[0] != binPath || fields[1] != units[name] {
		t.Fatalf("%s: ExecStart=%s: want %s %s ...", name, execStart, binPath, units[name])
	}
	for _, a := range fields[1:] {
		s.args = append(s.args, h.rewrite(a))
	}

	for _, line := range u.get("Service", "Environment") {
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(strings.Trim(kv, `"`), "=")
			s.env[k] = v
		}
	}
	for _, f := range u.get("Service", "EnvironmentFile") {
		optional := strings.HasPrefix(f, "-")
		b, err := os.ReadFile(h.rewrite(strings.TrimPrefix(f, "-")))
		if err != nil {
			if optional && os.IsNotExist(err) {
				continue
			}
			t.Fatalf("%s: EnvironmentFile=%s: %v", name, f, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: EnvironmentFile=%s: not NAME=value: %q", name, f, line)
			}
			s.env[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	for k, v := range s.env {
		s.env[k] = h.rewrite(v)
		if strings.HasSuffix(k, "_LISTEN") && v != "" {
			s.env[k] = freeAddr(t)
			s.listen[k] = s.env[k]
		}
	}

	state := h.path("/var/lib/" + u.one(t, name, "Service", "StateDirectory"))
	conf := h.path("/etc/" + u.one(t, name, "Service", "ConfigurationDirectory"))
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cleanEnv is the test's environment without TIDEMARK_ variables, so that
// only the unit's reach the process.
func cleanEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDEMARK_") {
			env = append(env, kv)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

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

// cluster is the processes the test started; on failure their output is
// logged.
type cluster struct {
	t     *testing.T
	procs []*proc
}

type proc struct {
	label string
	cmd   *exec.Cmd
	out   *lockedBuffer
	done  chan struct{}
	err   error
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t}
	t.Cleanup(func() {
		for _, p := range c.procs {
			select {
			case <-p.done:
			default:
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			for _, p := range c.procs {
				t.Logf("=== %s (%v):\n%s", p.label, p.err, p.out)
			}
		}
	})
	return c
}

// start runs the service in the background with its environment.
func (c *cluster) start(label string, s *service) *proc {
	c.t.Helper()
	p := &proc{label: label, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(tidemark(c.t), s.args...)
	p.cmd.Env = cleanEnv(s.env)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.procs = append(c.procs, p)
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p
}

// waitHTTP polls url until it answers 200 and ok(body), failing if p exits.
func (c *cluster) waitHTTP(p *proc, hc *http.Client, url string, ok func(string) bool) string {
	c.t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-p.done:
			c.t.Fatalf("%s exited (%v) while waiting for %s", p.label, p.err, url)
		default:
		}
		resp, err := hc.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		if resp.StatusCode == 200 && (ok == nil || ok(string(b))) {
			return string(b)
		}
	}
	c.t.Fatalf("%s: %s never answered as expected; last: %s", p.label, url, last)
	return ""
}

// stop sends SIGTERM and wants exit status 0.
func (c *cluster) stop(p *proc) {
	c.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		c.t.Fatalf("%s did not stop within 60 s of SIGTERM", p.label)
	}
	if p.err != nil {
		c.t.Errorf("%s exited with %v after SIGTERM", p.label, p.err)
	}
}

// run runs the binary to completion in dir with a clean environment.
func run(t *testing.T, dir, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(tidemark(t), args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv(nil)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func mustRun(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, dir, stdin, args...)
	if code != 0 {
		t.Fatalf("tidemark %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var verifiedChecks = regexp.MustCompile(`(?m)^tidemark_auditor_checks_total\{result="verified"\} (\d+)`)
var acceptedSize = regexp.MustCompile(`(?m)^tidemark_auditor_accepted_tree_size (\d+)`)

// TestProductionLayout runs the production layout of docs/systemd.md as
// processes on this machine, from the units in deploy/systemd: three
// witnesses (each its own host), the log with TLS and writer tokens, and the
// auditor, each with the command line of its ExecStart= and the environment
// of its Environment= lines and its EnvironmentFile=, written as the
// install steps say. One event goes in with `tidemark submit --wait` over
// TLS with the token; its receipt verifies offline with `tidemark verify
// --policy`; the running auditor reports a verified check, and a one-shot
// `tidemark audit --full` passes.
func TestProductionLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	c := newCluster(t)
	logHost := newHost(t, "log")
	logSvc := logHost.prepare("tidemark-log.service") // makes /etc/tidemark/log
	logConf := logHost.path("/etc/tidemark/log")

	// The log's key, as docs/systemd.md makes it.
	mustRun(t, logConf, "", "keygen", "audit.example.com/prod", "--out", "log")
	logPub := strings.TrimSpace(string(mustReadFile(t, filepath.Join(logConf, "log.pub"))))

	// Three witnesses, each on its own host, first start creates its key.
	type witness struct {
		name, addr, vkey string
		p                *proc
	}
	var ws []*witness
	for i := 1; i <= 3; i++ {
		h := newHost(t, fmt.Sprintf("w%d", i))
		h.prepare("tidemark-witness.service") // makes the directories
		h.write("/etc/tidemark/witness/logs", fmt.Sprintf("logs/v0\nvkey %s\nqpd 1000000\ncontact ops@example.com\n", logPub), 0o644)
		w := &witness{name: fmt.Sprintf("witness.example.org/w%d", i)}
		h.write("/etc/tidemark/witness/env", "TIDEMARK_WITNESS_NAME="+w.name+"\nTIDEMARK_WITNESS_LISTEN=0.0.0.0:8081\n", 0o644)
		s := h.prepare("tidemark-witness.service")
		w.addr = s.listen["TIDEMARK_WITNESS_LISTEN"]
		if w.addr == "" {
			t.Fatalf("witness %d: no TIDEMARK_WITNESS_LISTEN in its environment %v", i, s.env)
		}
		w.p = c.start(fmt.Sprintf("witness w%d", i), s)
		c.waitHTTP(w.p, http.DefaultClient, "http://"+w.addr+"/healthz", nil)
		w.vkey = strings.TrimSpace(string(mustReadFile(t, h.path("/var/lib/tidemark/witness/witness.pub"))))
		ws = append(ws, w)
	}

	// The log's TLS certificate, env, tokens and policy.
	ca := testpki.NewCA(t, "Tidemark test CA")
	testpki.WriteKeyPair(t, logConf, "tls", ca.Server(t))
	caFile := ca.WriteCert(t, t.TempDir(), "ca.pem")
	logHost.write("/etc/tidemark/log/env", "TIDEMARK_LOG_LISTEN=0.0.0.0:8080\nTIDEMARK_LOG_TLS_CERT=/etc/tidemark/log/tls.crt\nTIDEMARK_LOG_TLS_KEY=/etc/tidemark/log/tls.key\n", 0o644)
	logSvc = logHost.prepare("tidemark-log.service")
	logAddr := logSvc.listen["TIDEMARK_LOG_LISTEN"]
	if logAddr == "" {
		t.Fatalf("log: no TIDEMARK_LOG_LISTEN in its environment %v", logSvc.env)
	}
	_, port, _ := net.SplitHostPort(logAddr)
	logURL := "https://127.0.0.1:" + port

	tok := strings.Split(strings.TrimSpace(mustRun(t, logConf, "", "token", "ci")), "\n")
	if len(tok) != 2 {
		t.Fatalf("tidemark token: want two lines, have %q", tok)
	}
	logHost.write("/etc/tidemark/log/tokens", tok[1]+"\n", 0o640)
	tokenFile := filepath.Join(t.TempDir(), "writer-token")
	writeFile(t, tokenFile, []byte(tok[0]+"\n"), 0o600)

	var policy strings.Builder
	fmt.Fprintf(&policy, "log %s %s\n", logPub, logURL)
	for _, w := range ws {
		fmt.Fprintf(&policy, "witness %s %s http://%s\n", w.name, w.vkey, w.addr)
	}
	fmt.Fprintf(&policy, "group witnesses 2 %s %s %s\nquorum witnesses\n", ws[0].name, ws[1].name, ws[2].name)
	logHost.write("/etc/tidemark/log/policy", policy.String(), 0o640)

	for _, f := range []string{"TIDEMARK_LOG_KEY", "TIDEMARK_LOG_POLICY", "TIDEMARK_LOG_TOKENS", "TIDEMARK_LOG_TLS_CERT"} {
		if _, err := os.Stat(logSvc.env[f]); err != nil {
			t.Fatalf("log: %s=%s: %v (the unit's file is not where the install steps put it)", f, logSvc.env[f], err)
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: testpki.ClientConfig(ca)}}
	logP := c.start("log", logSvc)
	c.waitHTTP(logP, hc, logURL+"/healthz", nil)

	// Tokens are in force: a write without one is refused.
	if resp, err := hc.Post(logURL+"/v1/events", "application/json", strings.NewReader(`{"id":"x","action":"a","resource":"r","actor":"u"}`)); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST /v1/events without a token: %d, want 401", resp.StatusCode)
		}
	}

	// One event, over TLS with the token, to a witnessed receipt.
	event := `{"id":"prod-1","action":"deploy.create","resource":"prod/db","actor":"alice"}`
	out, errOut, code := run(t, "", event, "submit", "--log", logURL, "--token-file", tokenFile, "--tls-ca", caFile, "--wait")
	if code != 0 {
		t.Fatalf("tidemark submit --wait: exit %d\n%s%s", code, out, errOut)
	}
	receipt := filepath.Join(t.TempDir(), "receipt.json")
	writeFile(t, receipt, []byte(strings.TrimSpace(out)+"\n"), 0o644)

	// Offline: only the policy, a copy of the log's.
	offline := filepath.Join(t.TempDir(), "policy")
	writeFile(t, offline, []byte(policy.String()), 0o644)
	out, errOut, code = run(t, "", "", "verify", "--policy", offline, receipt)
	if code != 0 {
		t.Fatalf("tidemark verify --policy: exit %d\n%s%s\nreceipt: %s", code, out, errOut, mustReadFile(t, receipt))
	}
	t.Logf("tidemark verify: %s", strings.TrimSpace(out+errOut))

	// The auditor, installed as docs/systemd.md says, with the CA and a
	// metrics address in its env, checking every second.
	audHost := newHost(t, "auditor")
	audHost.prepare("tidemark-auditor.service")
	audHost.write("/etc/tidemark/auditor/policy", policy.String(), 0o644)
	copyFile(t, caFile, audHost.path("/etc/tidemark/auditor/ca.pem"), 0o644)
	audHost.write("/etc/tidemark/auditor/env", "TIDEMARK_AUDIT_TLS_CA=/etc/tidemark/auditor/ca.pem\nTIDEMARK_AUDIT_METRICS_LISTEN=127.0.0.1:9464\nTIDEMARK_AUDIT_INTERVAL=1s\n", 0o644)
	audSvc := audHost.prepare("tidemark-auditor.service")
	metrics := audSvc.listen["TIDEMARK_AUDIT_METRICS_LISTEN"]
	audP := c.start("auditor", audSvc)
	c.waitHTTP(audP, http.DefaultClient, "http://"+metrics+"/metrics", func(m string) bool {
		v := verifiedChecks.FindStringSubmatch(m)
		a := acceptedSize.FindStringSubmatch(m)
		if v == nil || a == nil {
			return false
		}
		n, _ := strconv.Atoi(v[1])
		size, _ := strconv.Atoi(a[1])
		return n >= 1 && size >= 1
	})

	// A one-shot full audit with the auditor's environment.
	full := exec.Command(tidemark(t), "audit", "--full", "--progress", "off")
	full.Env = cleanEnv(map[string]string{"TIDEMARK_AUDIT_POLICY": audSvc.env["TIDEMARK_AUDIT_POLICY"], "TIDEMARK_AUDIT_TLS_CA": audSvc.env["TIDEMARK_AUDIT_TLS_CA"]})
	if b, err := full.CombinedOutput(); err != nil || !strings.Contains(string(b), "result: verified") || !strings.Contains(string(b), "witnessed=true") {
		t.Fatalf("tidemark audit --full: %v\n%s", err, b)
	}

	c.stop(audP)
	c.stop(logP)
	for _, w := range ws {
		c.stop(w.p)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
