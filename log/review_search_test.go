package log

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// /add refuses a body that claims to be an event leaf even when it hides
// nesting deeper than encoding/json reads: the web page (JSON.parse) would
// show it as an event the log stamped, with the source and time the writer
// chose.
func TestAddRefusesADeeplyNestedForgedLeaf(t *testing.T) {
	tl := newTestLog(t, nil)
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	forged := `{"event":{"actor":"alice","action":"secret.read"},"received":"2026-01-01T00:00:00.000000000Z","source":"kube-apiserver","v":1,"x":` + deep + `}`
	r := tl.post("/add", "application/octet-stream", []byte(forged))
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "event leaf") {
		t.Fatalf("POST /add of a forged leaf: %d %.200s", r.status, r.body)
	}
}

// A witness of the policy answers the status fetch with a redirect to an
// address inside the log's network: the log must not follow it and
// publish what it read there (to anyone, CORS *) as the witness's
// checkpoint; nor publish any answer that is not a checkpoint of this log.
func TestStatusDoesNotFetchWhereAWitnessRedirects(t *testing.T) {
	const secret = "aws_secret_access_key=EXAMPLE-SECRET"
	inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, secret)
	}))
	t.Cleanup(inside.Close)
	w := newFakeWitness(t, "w1", nil, 0)
	junk := newFakeWitness(t, "w2", nil, 0)
	for _, fw := range []*fakeWitness{w, junk} {
		fw.hs.Close()
		fw := fw
		fw.hs = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodPost:
				fw.addCheckpoint(rw, r)
			case fw == w:
				http.Redirect(rw, r, inside.URL+"/latest/meta-data", http.StatusFound)
			default:
				fmt.Fprintln(rw, secret) // not a checkpoint at all
			}
		}))
		t.Cleanup(fw.hs.Close)
	}
	tl := witnessedLog(t, 1, w, junk)
	if r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"actor":"alice"}`)); r.status != 200 {
		t.Fatalf("wait=witnessed: %d %s", r.status, r.body)
	}
	r := tl.get("/v1/status")
	if r.status != 200 {
		t.Fatalf("GET /v1/status: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "EXAMPLE-SECRET") {
		t.Fatalf("/v1/status publishes what a witness's redirect pointed at:\n%s", r.body)
	}
	var st Status
	if err := json.Unmarshal(r.body, &st); err != nil || len(st.Witnesses) != 2 {
		t.Fatalf("status: %v %s", err, r.body)
	}
	for _, ws := range st.Witnesses {
		if ws.Checkpoint != "" || ws.Error == "" {
			t.Errorf("witness %s: %+v, want an error and no checkpoint", ws.Name, ws)
		}
	}
}
