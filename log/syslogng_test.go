package log

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// TestSyslogNGDeliversToTheLog runs the real syslog-ng with the example
// config of deploy/examples/syslog-ng, sends it syslog lines over TCP, and
// finds them in the log as leaves. It needs syslog-ng with its http() module
// (Debian: syslog-ng-core, syslog-ng-mod-http; .ci/run installs them): it
// skips without them, except in CI (CI=true), where it fails.
func TestSyslogNGDeliversToTheLog(t *testing.T) {
	if testing.Short() {
		t.Skip("starts syslog-ng")
	}
	bin := findSyslogNG()
	config, err := filepath.Abs("../deploy/examples/syslog-ng/tidemark.conf")
	if err != nil {
		t.Fatal(err)
	}
	tl := newK8sTestLog(t)
	port := freeLoopbackPort(t)
	env := append(os.Environ(), "TIDEMARK_URL="+tl.hs.URL, "TIDEMARK_TOKEN="+k8sToken, "TIDEMARK_SYSLOG_PORT="+strconv.Itoa(port))
	if bin != "" {
		check := exec.Command(bin, "--syntax-only", "-f", config)
		check.Env = env
		if out, err := check.CombinedOutput(); err != nil {
			if !bytes.Contains(out, []byte("http")) {
				t.Fatalf("syslog-ng refuses %s: %v\n%s", config, err, out)
			}
			t.Logf("syslog-ng has no http() destination: %s", out)
			bin = ""
		}
	}
	if bin == "" {
		msg := "syslog-ng with its http() module is not installed (Debian: apt-get install syslog-ng-core syslog-ng-mod-http; .ci/run does it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	dir := t.TempDir()
	var out bytes.Buffer
	cmd := exec.Command(bin, "-F", "-f", config, "-R", filepath.Join(dir, "persist"), "-p", filepath.Join(dir, "pid"),
		"-c", filepath.Join(dir, "ctl"), "--no-caps")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	// syslog-ng takes a moment to listen.
	var conn net.Conn
	deadline := time.Now().Add(20 * time.Second)
	for conn == nil {
		select {
		case err := <-exited:
			t.Fatalf("syslog-ng exited: %v\n%s", err, out.String())
		default:
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("syslog-ng does not listen on %d: %v\n%s", port, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	marker := strconv.FormatInt(time.Now().UnixNano(), 36)
	lines := []string{
		"<86>Nov 25 23:20:01 bastion-1 sshd[4242]: Accepted publickey for alice from 10.0.0.7 port 52100 ssh2 " + marker + "-1",
		"<85>Nov 25 23:20:02 bastion-1 sudo[4250]: alice : TTY=pts/0 ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx " + marker + "-2",
		"<38>Nov 25 23:20:03 vault-0 vault[7]: {\"type\":\"response\",\"path\":\"database/creds/payments\"} " + marker + "-3",
	}
	if _, err := conn.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	// Poll the log until every line is a leaf.
	found := map[string]checkpoint.Leaf{}
	deadline = time.Now().Add(60 * time.Second)
	for len(found) < len(lines) {
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the log has %d of the %d lines; syslog-ng said:\n%s", len(found), len(lines), out.String())
		}
		time.Sleep(100 * time.Millisecond)
		for _, b := range tl.leaves() {
			l, err := checkpoint.ParseLeaf(b)
			if err != nil {
				t.Fatalf("not an event leaf: %v", err)
			}
			var ev struct{ MESSAGE string }
			json.Unmarshal(l.Event, &ev)
			for i := range lines {
				if strings.HasSuffix(ev.MESSAGE, fmt.Sprintf("%s-%d", marker, i+1)) {
					found[fmt.Sprint(i+1)] = l
				}
			}
		}
	}
	for n, l := range found {
		var ev map[string]string
		if err := json.Unmarshal(l.Event, &ev); err != nil {
			t.Fatalf("line %s: %v", n, err)
		}
		if l.Source != "kube-apiserver" || ev["HOST"] == "" || ev["PROGRAM"] == "" || ev["DATE"] == "" || ev["FACILITY"] == "" {
			t.Errorf("line %s: leaf from %q with event %s", n, l.Source, l.Event)
		}
	}
	if ev := found["2"].Event; !bytes.Contains(ev, []byte(`"PROGRAM":"sudo"`)) || !bytes.Contains(ev, []byte(`"PID":"4250"`)) {
		t.Errorf("sudo line: %s", ev)
	}
}

func findSyslogNG() string {
	if p, err := exec.LookPath("syslog-ng"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/syslog-ng", "/usr/local/sbin/syslog-ng"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
