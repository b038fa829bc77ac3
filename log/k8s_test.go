package log

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
)

// The fixtures in testdata/k8s are EventLists as the kube-apiserver's audit
// webhook sends them: compact JSON, items without their own kind and
// apiVersion. batch-eventlist.json is a batch-mode delivery (the
// RequestReceived and ResponseComplete stages of one create, a Metadata-level
// secret read, a forbidden list, a token request with a field from a future
// apiserver, a watch); blocking-eventlist.json is a blocking-mode delivery of
// one event.

const k8sToken = "k8s-apiserver-token"

func newK8sTestLog(t *testing.T) *testLog {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(TokenLine("kube-apiserver", k8sToken)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	return newTestLog(t, func(c *Config) { c.Tokens = tokens })
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postAudit posts an EventList as the apiserver does and returns the results.
func (tl *testLog) postAudit(body []byte) []eventResult {
	tl.t.Helper()
	r := tl.post("/v1/k8s/audit", "application/json", body, "Authorization", "Bearer "+k8sToken)
	if r.status != http.StatusOK {
		tl.t.Fatalf("POST /v1/k8s/audit: %d %s", r.status, r.body)
	}
	var res struct{ Results []eventResult }
	if err := json.Unmarshal(r.body, &res); err != nil {
		tl.t.Fatal(err)
	}
	return res.Results
}

// fixtureItems returns the raw items of an EventList fixture.
func fixtureItems(t *testing.T, body []byte) []json.RawMessage {
	t.Helper()
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func TestK8sAuditBatchIsOneLeafPerEventAsSent(t *testing.T) {
	tl := newK8sTestLog(t)
	body := readFixture(t, "k8s/batch-eventlist.json")
	items := fixtureItems(t, body)
	results := tl.postAudit(body)
	if len(results) != len(items) {
		t.Fatalf("%d results for %d events", len(results), len(items))
	}
	leaves := tl.leaves()
	for i, item := range items {
		if results[i].Index != uint64(i) || results[i].Duplicate || results[i].Truncated {
			t.Errorf("event %d: %+v", i, results[i])
		}
		l, err := checkpoint.ParseLeaf(leaves[results[i].Index])
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		want, err := checkpoint.CanonicalEvent(item)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(l.Event, want.Canonical) {
			t.Errorf("leaf %d event is not the item as sent:\n got %s\nwant %s", i, l.Event, want.Canonical)
		}
		var ev struct{ AuditID, Stage string }
		json.Unmarshal(item, &ev)
		if l.IdempotencyKey != "k8s:"+ev.AuditID+"/"+ev.Stage {
			t.Errorf("leaf %d idempotency_key %q", i, l.IdempotencyKey)
		}
		if l.Source != "kube-apiserver" {
			t.Errorf("leaf %d source %q, want the token's name", i, l.Source)
		}
	}
	// A field the Go types of today's apiserver do not know is kept.
	if !bytes.Contains(leaves[4], []byte(`"futureField":{"addedIn":"v1.40","kept":true}`)) {
		t.Errorf("unknown field lost: %s", leaves[4])
	}
	// Blocking mode: one event per EventList, the same endpoint.
	blocking := readFixture(t, "k8s/blocking-eventlist.json")
	if res := tl.postAudit(blocking); len(res) != 1 || !res[0].Duplicate || res[0].Index != 2 {
		t.Errorf("blocking-mode delivery of an event already logged by a batch: %+v, want index 2, duplicate", res)
	}
	if m := tl.get("/metrics"); !bytes.Contains(m.body, []byte(`tidemark_log_appended_total{endpoint="k8s"} 6`)) {
		t.Errorf("k8s appends are not counted under endpoint=\"k8s\"")
	}
}

func TestK8sAuditRedeliveredBatchIsNotLoggedTwice(t *testing.T) {
	tl := newK8sTestLog(t)
	body := readFixture(t, "k8s/batch-eventlist.json")
	first := tl.postAudit(body)
	n := tl.size()
	check := func(when string) {
		t.Helper()
		again := tl.postAudit(body)
		for i := range first {
			if again[i].Index != first[i].Index || !again[i].Duplicate {
				t.Errorf("%s: event %d answered %+v, want index %d, duplicate", when, i, again[i], first[i].Index)
			}
		}
		if got := tl.size(); got != n {
			t.Errorf("%s: tree size %d, want still %d", when, got, n)
		}
	}
	check("redelivered at once")
	tl.close()
	tl.start()
	check("redelivered after a restart")
}

// The apiserver retries a batch whose answer it never got. Here the log
// "dies" after appending and before writing its idempotency index: the
// retry after the restart must find the keys in the leaves themselves.
func TestK8sAuditRedeliveryAfterACrashFindsTheKeysInTheLeaves(t *testing.T) {
	tl := newK8sTestLog(t)
	tl.postAudit(readFixture(t, "k8s/blocking-eventlist.json"))
	tl.s.afterAppend = func() error { return fmt.Errorf("simulated crash") }
	body := readFixture(t, "k8s/batch-eventlist.json")
	r := tl.post("/v1/k8s/audit", "application/json", body, "Authorization", "Bearer "+k8sToken)
	if r.status != http.StatusInternalServerError {
		t.Fatalf("crashed request answered %d %s", r.status, r.body)
	}
	// The batch's secret read is the blocking event: already logged.
	if n := tl.size(); n != 6 {
		t.Fatalf("tree size %d, want 6", n)
	}
	tl.kill()
	tl.start()
	res := tl.postAudit(body)
	for i, want := range []uint64{1, 2, 0, 3, 4, 5} {
		if res[i].Index != want || !res[i].Duplicate {
			t.Errorf("event %d after the crash: %+v, want index %d, duplicate", i, res[i], want)
		}
	}
	if n := tl.size(); n != 6 {
		t.Errorf("tree size %d after the redelivery, want still 6", n)
	}
}

func TestK8sAuditOversizedEventIsLoggedTruncated(t *testing.T) {
	tl := newK8sTestLog(t)
	items := fixtureItems(t, readFixture(t, "k8s/batch-eventlist.json"))
	// A ConfigMap of 200 KB, logged at RequestResponse level.
	var big map[string]any
	json.Unmarshal(items[1], &big)
	big["requestObject"] = map[string]any{"kind": "ConfigMap", "data": map[string]string{"blob": strings.Repeat("x", 200_000)}}
	bigRaw, _ := json.Marshal(big)
	body := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` +
		string(items[0]) + "," + string(bigRaw) + "," + string(items[2]) + `]}`)
	res := tl.postAudit(body)
	if len(res) != 3 || res[0].Truncated || !res[1].Truncated || res[2].Truncated {
		t.Fatalf("results %+v: want the middle one truncated, the others whole", res)
	}
	leaves := tl.leaves()
	if len(leaves) != 3 {
		t.Fatalf("%d leaves, want 3", len(leaves))
	}
	l, err := checkpoint.ParseLeaf(leaves[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaves[1]) > checkpoint.MaxLeafSize {
		t.Errorf("leaf is %d bytes", len(leaves[1]))
	}
	orig, _ := checkpoint.CanonicalEvent(bigRaw)
	sum := sha256.Sum256(orig.Canonical)
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(l.Event, &ev); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"tidemark_truncated":       `true`,
		"tidemark_original_sha256": `"` + hex.EncodeToString(sum[:]) + `"`,
		"tidemark_original_size":   fmt.Sprint(len(orig.Canonical)),
		"tidemark_omitted":         `["requestObject"]`,
		"auditID":                  `"0b6f1e4c-9d2a-4f7b-8e3c-5a1d7b9f2e60"`,
		"stage":                    `"ResponseComplete"`,
		"verb":                     `"create"`,
	} {
		if string(ev[name]) != want {
			t.Errorf("stand-in %s = %s, want %s", name, ev[name], want)
		}
	}
	// Everything but the huge member is kept, as sent.
	var origMembers map[string]json.RawMessage
	json.Unmarshal(orig.Canonical, &origMembers)
	for name, v := range origMembers {
		if name == "requestObject" {
			continue
		}
		if !bytes.Equal(ev[name], v) {
			t.Errorf("member %s: %s, want %s", name, ev[name], v)
		}
	}
	if l.IdempotencyKey != "k8s:0b6f1e4c-9d2a-4f7b-8e3c-5a1d7b9f2e60/ResponseComplete" {
		t.Errorf("idempotency_key %q", l.IdempotencyKey)
	}
	// Redelivered, the truncated event is a duplicate like the others.
	again := tl.postAudit(body)
	for i := range again {
		if again[i].Index != res[i].Index || !again[i].Duplicate {
			t.Errorf("redelivery: event %d %+v", i, again[i])
		}
	}
}

func TestK8sAuditRefusesWhatItCannotParse(t *testing.T) {
	tl := newK8sTestLog(t)
	item := `{"level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get"}`
	list := func(items ...string) []byte {
		return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`)
	}
	auth := []string{"Authorization", "Bearer " + k8sToken}
	for _, tc := range []struct {
		name, ctype string
		body        []byte
		header      []string
		status      int
		want        string
	}{
		{"no token", "application/json", list(item), nil, 401, "bearer token"},
		{"wrong content type", "application/x-ndjson", list(item), auth, 415, "EventList"},
		{"not JSON", "application/json", []byte(`{"kind":"EventList",`), auth, 400, "EventList"},
		{"an event, not a list", "application/json", []byte(item), auth, 400, "EventList"},
		{"old API version", "application/json", []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}`), auth, 400, "audit.k8s.io/v1"},
		{"no auditID", "application/json", list(item, `{"stage":"ResponseComplete"}`), auth, 400, "item 2 of the EventList: no auditID"},
		{"no stage", "application/json", list(`{"auditID":"x"}`), auth, 400, "stage"},
		{"item not an object", "application/json", list(item, `"x"`), auth, 400, "item 2"},
		{"junk between items", "application/json", []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + item + ` x ` + item + `]}`), auth, 400, "EventList"},
		{"duplicate envelope member", "application/json", []byte(`{"kind":"EventList","kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`), auth, 400, "duplicate"},
		{"reserved marker", "application/json", list(`{"auditID":"c","stage":"ResponseComplete","tidemark_truncated":true}`), auth, 400, "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tl.post("/v1/k8s/audit", tc.ctype, tc.body, tc.header...)
			var e struct{ Error string }
			json.Unmarshal(r.body, &e)
			if r.status != tc.status || !strings.Contains(e.Error, tc.want) {
				t.Errorf("%d %s, want %d and an error mentioning %q", r.status, r.body, tc.status, tc.want)
			}
		})
	}
	if n := tl.size(); n != 0 {
		t.Errorf("tree size %d after refused requests, want 0", n)
	}
	// An empty list is fine and appends nothing.
	if res := tl.postAudit(list()); len(res) != 0 {
		t.Errorf("empty EventList: %+v", res)
	}
}

// The apiserver copies a client's PATCH body verbatim into requestObject,
// and accepts bodies that are not I-JSON: refusing the EventList would
// make the apiserver drop every event in it. Such an event is logged as a
// stand-in: the members that are I-JSON, the others named as omitted, and
// the hash of the event as sent.
func TestK8sAuditEventNotIJSONIsLoggedAsAStandIn(t *testing.T) {
	tl := newK8sTestLog(t)
	raw := `{"level":"Request","auditID":"b","stage":"ResponseComplete","verb":"patch","user":{"username":"mallory"},` +
		`"requestObject":{"metadata":{"labels":{"a":"1","a":"2"}}},"n":9007199254740993,"dup":1,"dup":2}`
	body := eventList(raw)
	res := tl.postAudit(body)
	if len(res) != 1 || !res[0].Truncated {
		t.Fatalf("results %+v, want one stand-in", res)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(tl.eventOf(res[0].Index)), &got); err != nil {
		t.Fatal(err)
	}
	if got[notIJSONMarker] != true || got[truncatedMarker] != true || got["tidemark_original_sha256"] != hexSHA256(raw) || got["tidemark_original_size"] != float64(len(raw)) {
		t.Errorf("stand-in markers: %v", got)
	}
	for _, kept := range []string{"level", "auditID", "stage", "verb", "user"} {
		if _, ok := got[kept]; !ok {
			t.Errorf("member %q not kept: %v", kept, got)
		}
	}
	omitted, _ := got["tidemark_omitted"].([]any)
	if fmt.Sprint(omitted) != "[requestObject n dup]" {
		t.Errorf("omitted %v, want requestObject, n and dup", omitted)
	}
	for _, gone := range []string{"requestObject", "n", "dup"} {
		if _, ok := got[gone]; ok {
			t.Errorf("member %q kept", gone)
		}
	}
	// Redelivered, it is a retry.
	if again := tl.postAudit(body); again[0].Index != res[0].Index || !again[0].Duplicate {
		t.Errorf("redelivery: %+v", again)
	}
}

func TestK8sKeys(t *testing.T) {
	for _, tc := range []struct{ auditID, stage, want string }{
		{"0b6f1e4c-9d2a-4f7b-8e3c-5a1d7b9f2e60", "RequestReceived", "k8s:0b6f1e4c-9d2a-4f7b-8e3c-5a1d7b9f2e60/RequestReceived"},
		// A client may choose its Audit-ID: long or odd ones are hashed.
		{strings.Repeat("a", 129), "ResponseComplete", "k8s:sha256:" + hexSHA256(strings.Repeat("a", 129)) + "/ResponseComplete"},
		{"id with\nnewline", "Panic", "k8s:sha256:" + hexSHA256("id with\nnewline") + "/Panic"},
		{"sha256:abc", "Panic", "k8s:sha256:" + hexSHA256("sha256:abc") + "/Panic"},
	} {
		if got := k8sKey(tc.auditID, tc.stage); got != tc.want {
			t.Errorf("k8sKey(%q, %q) = %q, want %q", tc.auditID, tc.stage, got, tc.want)
		}
	}
}

func hexSHA256(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
