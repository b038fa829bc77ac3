package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/report"
)

// postAs posts NDJSON events with a writer token and returns their indexes.
func postAs(t *testing.T, logURL, token string, events []string) []uint64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, logURL+"/v1/events", strings.NewReader(strings.Join(events, "\n")+"\n"))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /v1/events: %d %s", resp.StatusCode, body)
	}
	var r struct{ Results []struct{ Index uint64 } }
	if err := json.Unmarshal(body, &r); err != nil || len(r.Results) != len(events) {
		t.Fatalf("POST /v1/events: %v %s", err, body)
	}
	var idx []uint64
	for _, x := range r.Results {
		idx = append(idx, x.Index)
	}
	return idx
}

// waitCovered waits until the log's published checkpoint covers n entries.
func waitCovered(t *testing.T, logURL string, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); publishedSize(t, logURL) < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers %d entries", n)
		}
	}
}

// reportCLI runs `tidemark report` and returns its output and exit status.
func reportCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(tidemarkBin, append([]string{"report", "--progress", "off"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// externalRef finds what would make a page load something: a script, a
// stylesheet or image from elsewhere, an http(s) src or href.
var externalRef = regexp.MustCompile(`(?i)<script|<link|<iframe|<img|@import|url\(|(src|href)\s*=\s*["']?\s*(https?:|//)`)

// TestReportWitnessedLog renders the report for a real log with three real
// witnesses (2 of 3), with events from two sources (two writer tokens) and
// several actions, some received before the period and some after, and
// checks the report's figures against what was sent and what the log
// serves: counts by source and action, first and last index, the
// checkpoint's size and cosigners, the verification; and that the HTML
// holds them and loads nothing from elsewhere.
func TestReportWitnessedLog(t *testing.T) {
	dir := t.TempDir()
	deployTok, deployLine := newToken(t, "ci-deploy")
	k8sTok, k8sLine := newToken(t, "k8s-audit")
	tokens := writeTestFile(t, filepath.Join(dir, "tokens"), deployLine+"\n"+k8sLine+"\n")
	wl := startWitnessedLogWith(t, 3, 2, "--tokens", tokens)
	u := wl.url()

	deploy := func(i int, action string) string {
		return fmt.Sprintf(`{"id":"d-%d","actor":"ci","action":%q,"resource":"prod/app/%d","outcome":"success"}`, i, action, i)
	}
	k8s := func(i int, verb string, code int) string {
		return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"k-%d","stage":"ResponseComplete","verb":%q,"user":{"username":"bob"},"objectRef":{"resource":"secrets","namespace":"prod","name":"db-%d"},"responseStatus":{"code":%d}}`, i, verb, i, code)
	}

	// Before the period.
	before := postAs(t, u, deployTok, []string{deploy(0, "deploy.create"), deploy(1, "deploy.create"), deploy(2, "deploy.delete")})
	before = append(before, postAs(t, u, k8sTok, []string{k8s(0, "get", 200)})...)
	waitCovered(t, u, 4)
	time.Sleep(10 * time.Millisecond) // the clock moves past the last received time
	from := time.Now().UTC()

	// In the period: ci-deploy 4 deploy.create and 2 deploy.rollback;
	// k8s-audit 3 get (200), 2 delete (403), 1 list (500).
	var in []uint64
	in = append(in, postAs(t, u, deployTok, []string{deploy(10, "deploy.create"), deploy(11, "deploy.create"), deploy(12, "deploy.rollback")})...)
	in = append(in, postAs(t, u, k8sTok, []string{k8s(10, "get", 200), k8s(11, "delete", 403), k8s(12, "get", 200)})...)
	in = append(in, postAs(t, u, deployTok, []string{deploy(13, "deploy.create"), deploy(14, "deploy.rollback"), deploy(15, "deploy.create")})...)
	in = append(in, postAs(t, u, k8sTok, []string{k8s(13, "delete", 403), k8s(14, "list", 500), k8s(15, "get", 200)})...)
	time.Sleep(10 * time.Millisecond)
	to := time.Now().UTC()
	time.Sleep(10 * time.Millisecond)

	// After the period.
	after := postAs(t, u, k8sTok, []string{k8s(20, "delete", 200), k8s(21, "patch", 200)})
	after = append(after, postAs(t, u, deployTok, []string{deploy(20, "deploy.delete")})...)
	total := uint64(len(before) + len(in) + len(after))
	waitCovered(t, u, total)

	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	htmlFile, jsonFile := filepath.Join(out, "report.html"), filepath.Join(out, "report.json")
	o, code := reportCLI(t, "--policy", wl.policy, "--log", u, "--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano),
		"--out", htmlFile, "--json", jsonFile)
	if code != 0 {
		t.Fatalf("tidemark report: exit %d\n%s", code, o)
	}
	jb, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(jb, &r); err != nil {
		t.Fatal(err)
	}

	// The verification and the checkpoint.
	v := r.Verification
	size := publishedSize(t, u)
	if !v.Verified || v.Result != "verified" || v.ExitCode != 0 || !v.Witnessed || !v.RootMatched || !v.TilesMatched {
		t.Errorf("verification: %+v", v)
	}
	if v.Size != total || v.Leaves != total || v.EventLeaves != total || v.RawLeaves != 0 || v.BadLeaves != 0 || size != total {
		t.Errorf("verification counts %+v, want %d event leaves (published size %d)", v, total, size)
	}
	c := r.Checkpoint
	if c == nil {
		t.Fatalf("no checkpoint in the report:\n%s", jb)
	}
	if c.Origin != "e2e.test/log" || c.Size != total || c.Quorum != "g" || c.QuorumTime == nil || !strings.HasPrefix(c.Note, "e2e.test/log\n"+fmt.Sprint(total)+"\n"+c.Root+"\n") {
		t.Errorf("checkpoint %+v", c)
	}
	if len(c.Cosigners) < 2 || len(c.Witnesses) != 3 {
		t.Errorf("cosigners %+v, witnesses %+v: want at least 2 of w1, w2, w3", c.Cosigners, c.Witnesses)
	}
	for _, cs := range c.Cosigners {
		if !slices.Contains([]string{"w1", "w2", "w3"}, cs.Name) || cs.Time.IsZero() || !strings.Contains(c.Note, "— e2e.test/"+cs.Name+" ") {
			t.Errorf("cosigner %+v not a witness whose cosignature is in the note", cs)
		}
	}
	if r.Log.Origin != "e2e.test/log" || r.Log.URL != u || r.Log.Policy != readFile(t, wl.policy) || r.Log.VKey == "" || !strings.Contains(r.Log.Policy, r.Log.VKey) {
		t.Errorf("log %+v", r.Log)
	}

	// The period's figures against what was sent.
	e := r.Entries
	if e.Entries != uint64(len(in)) || e.Events != uint64(len(in)) || e.Commitments != 0 || e.Erasures != 0 || e.Unparsed != 0 {
		t.Errorf("period entries %+v, want %d events", e, len(in))
	}
	if e.FirstIndex == nil || *e.FirstIndex != slices.Min(in) || *e.LastIndex != slices.Max(in) {
		t.Errorf("period indexes %v..%v, want %d..%d", e.FirstIndex, e.LastIndex, slices.Min(in), slices.Max(in))
	}
	if e.FirstReceived == nil || e.FirstReceived.Before(from) || !e.LastReceived.Before(to) {
		t.Errorf("period received %v..%v, outside [%v, %v)", e.FirstReceived, e.LastReceived, from, to)
	}
	wantSource := map[string]uint64{"ci-deploy": 6, "k8s-audit": 6}
	wantAction := map[string]uint64{"deploy.create": 4, "deploy.rollback": 2, "get": 3, "delete": 2, "list": 1}
	wantOutcome := map[string]uint64{"success": 9, "denied": 2, "failure": 1}
	for name, pair := range map[string][2]map[string]uint64{
		"by_source": {e.BySource, wantSource}, "events_by_source": {e.EventsBySource, wantSource},
		"by_action": {e.ByAction, wantAction}, "by_outcome": {e.ByOutcome, wantOutcome},
	} {
		if fmt.Sprint(pair[0]) != fmt.Sprint(pair[1]) {
			t.Errorf("%s %v, want %v", name, pair[0], pair[1])
		}
	}
	if len(r.Erasures.InPeriod) != 0 || len(r.Erasures.Covering) != 0 || r.Erasures.ErasedInPeriod != 0 {
		t.Errorf("erasures %+v in a log without any", r.Erasures)
	}
	if r.Log.FirstReceived == nil || r.Log.FirstReceived.After(from) || !r.Log.LastReceived.After(to) {
		t.Errorf("log span %v..%v does not hold the period", r.Log.FirstReceived, r.Log.LastReceived)
	}

	// Controls and commands, with the log's values.
	var ids []string
	for _, ctl := range r.Controls {
		ids = append(ids, ctl.ID)
		if len(ctl.Provides) == 0 || len(ctl.Operator) == 0 {
			t.Errorf("control %s without both sides", ctl.ID)
		}
	}
	if got := strings.Join(ids, "; "); got != "PCI DSS v4.0 10.3.4; PCI DSS v4.0 10.5 (10.5.1); SOC 2 CC7.2; ISO/IEC 27001:2022 Annex A 8.15" {
		t.Errorf("controls %s", got)
	}
	var cmds []string
	for _, cm := range r.Commands {
		cmds = append(cmds, cm.Command)
	}
	all := strings.Join(cmds, "\n")
	for _, want := range []string{
		"tidemark audit --policy policy.txt --log-url " + u + " --full",
		fmt.Sprintf("%s/v1/receipt/%d", u, slices.Min(in)),
		"tidemark verify --policy policy.txt",
		"fsck@v1.0.4 --storage_url " + u + "/",
		"--from " + from.Format(time.RFC3339Nano) + " --to " + to.Format(time.RFC3339Nano),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("commands lack %q:\n%s", want, all)
		}
	}
	// A command of the report, run: the receipt of the period's first entry verifies.
	resp, err := http.Get(fmt.Sprintf("%s/v1/receipt/%d", u, slices.Min(in)))
	if err != nil {
		t.Fatal(err)
	}
	receipt, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if o, code := verifyCLI(t, wl.policy, receipt); code != 0 {
		t.Errorf("tidemark verify on the receipt of index %d: exit %d\n%s", slices.Min(in), code, o)
	}

	// The HTML holds the figures (its text: html/template writes "+" as
	// "&#43;") and loads nothing.
	hb, err := os.ReadFile(htmlFile)
	if err != nil {
		t.Fatal(err)
	}
	h := html.UnescapeString(string(hb))
	if m := externalRef.FindString(string(hb)); m != "" {
		t.Errorf("the HTML refers outside itself: %q", m)
	}
	for _, want := range []string{
		"<strong>Verified.</strong>", c.Root, c.RootHex, "e2e.test/log", ">ci-deploy<", ">k8s-audit<",
		"<td>deploy.create</td><td class=\"n\">4</td>", "<td>get</td><td class=\"n\">3</td>", "<td>list</td><td class=\"n\">1</td>",
		fmt.Sprintf("<td>%d, ", slices.Min(in)), fmt.Sprintf("<td>%d, ", slices.Max(in)),
		"PCI DSS v4.0 10.3.4", "SOC 2 CC7.2", "ISO/IEC 27001:2022 Annex A 8.15",
		fmt.Sprintf("Entries read and hashed</th><td>%d: %d event", total, total),
		"tidemark audit --policy policy.txt --log-url " + u + " --full",
	} {
		if !strings.Contains(h, want) {
			t.Errorf("the HTML lacks %q", want)
		}
	}
	for _, cs := range c.Cosigners {
		if !strings.Contains(h, "<td>"+cs.Name+"</td><td>yes</td><td>"+cs.Time.Format("2006-01-02 15:04:05 UTC")+"</td>") {
			t.Errorf("the HTML lacks cosigner %s at %s", cs.Name, cs.Time)
		}
	}
	// The signed note is there verbatim.
	if !strings.Contains(h, "<pre>"+c.Note+"</pre>") {
		t.Errorf("the HTML lacks the signed checkpoint:\n%s", c.Note)
	}
	if !bytes.Contains(jb, []byte(`"format": "tidemark-report/v1"`)) {
		t.Errorf("JSON without its format")
	}

	// With an auditor state: a first run accepts the checkpoint, and the
	// next, once the log has grown, lists it as an earlier checkpoint the
	// new one extends.
	state := t.TempDir()
	o, code = reportCLI(t, "--policy", wl.policy, "--log", u, "--from", "2001-01-01", "--to", "2001-02-01", "--out", htmlFile, "--json", jsonFile, "--state", state)
	if code != 0 {
		t.Fatalf("with --state: exit %d\n%s", code, o)
	}
	postAs(t, u, deployTok, []string{deploy(30, "deploy.create")})
	waitCovered(t, u, total+1)
	o, code = reportCLI(t, "--policy", wl.policy, "--log", u, "--from", "2001-01-01", "--to", "2001-02-01", "--out", htmlFile, "--json", jsonFile, "--state", state)
	if code != 0 {
		t.Fatalf("with --state, grown: exit %d\n%s", code, o)
	}
	jb, _ = os.ReadFile(jsonFile)
	var grown report.Report
	json.Unmarshal(jb, &grown)
	if grown.Checkpoint == nil || grown.Checkpoint.Size != total+1 || len(grown.Earlier) != 1 || grown.Earlier[0].Size != total || grown.Earlier[0].Root != c.Root ||
		len(grown.Earlier[0].Cosigners) < 2 || !grown.Verification.Verified || grown.Verification.Leaves != total+1 {
		t.Errorf("with --state, grown: checkpoint %+v, earlier %+v, verification %+v", grown.Checkpoint, grown.Earlier, grown.Verification)
	}
	hb, _ = os.ReadFile(htmlFile)
	if !strings.Contains(html.UnescapeString(string(hb)), "Earlier checkpoints") {
		t.Error("the HTML lacks the earlier checkpoint")
	}

	// A period with nothing in it, and a log that cannot be reached.
	o, code = reportCLI(t, "--policy", wl.policy, "--log", u, "--from", "2001-01-01", "--to", "2001-02-01", "--out", htmlFile, "--json", jsonFile, "--progress", "lines")
	if code != 0 {
		t.Fatalf("empty period: exit %d\n%s", code, o)
	}
	if want := fmt.Sprintf("report: %d/%d entries (100.0%%)", total+1, total+1); !strings.Contains(o, want) {
		t.Errorf("--progress lines: no %q in\n%s", want, o)
	}
	jb, _ = os.ReadFile(jsonFile)
	var empty report.Report
	json.Unmarshal(jb, &empty)
	if empty.Entries.Entries != 0 || empty.Entries.FirstIndex != nil || !empty.Verification.Verified || len(empty.Entries.BySource) != 0 {
		t.Errorf("empty period: %+v", empty.Entries)
	}
	o, code = reportCLI(t, "--policy", wl.policy, "--log", "http://"+freeAddr(t), "--from", "2001-01-01", "--to", "2001-02-01", "--out", htmlFile)
	hb, _ = os.ReadFile(htmlFile)
	if code != 2 || !strings.Contains(string(hb), "NOT VERIFIED (unchecked)") {
		t.Errorf("unreachable log: exit %d, want 2 and a report saying NOT VERIFIED\n%s", code, o)
	}
	for _, args := range [][]string{
		{"--log", u, "--from", "2001-02-01", "--to", "2001-01-01", "--out", htmlFile},
		{"--log", u, "--from", "yesterday", "--to", "2001-01-01", "--out", htmlFile},
		{"--log", u, "--from", "2001-01-01", "--to", "2001-02-01"},
	} {
		if o, code := reportCLI(t, append([]string{"--policy", wl.policy}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, o)
		}
	}
}
