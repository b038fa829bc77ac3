package log

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/checkpoint"
	"golang.org/x/mod/sumdb/note"
)

// A fakeWitness answers C2SP tlog-witness add-checkpoint requests: it keeps
// the size it last cosigned (answering 409 with it when "old" differs, as
// the spec says), checks nothing else, and cosigns with its key. Its answer
// can be spoiled, to play a witness that misbehaves.
type fakeWitness struct {
	t      *testing.T
	name   string
	signer note.Signer
	vkey   string
	hs     *httptest.Server
	// spoil turns a good answer line into what the witness sends.
	spoil func(line string) string
	delay time.Duration
	// hung: the witness takes requests and never answers them, as a
	// stopped process behind an open socket does.
	hung atomic.Bool
	// arrived, when set, receives each request the witness holds (hung).
	arrived chan struct{}

	mu   sync.Mutex
	size uint64
}

func newFakeWitness(t *testing.T, name string, spoil func(string) string, delay time.Duration) *fakeWitness {
	t.Helper()
	skey, vkey, err := checkpoint.GenerateWitnessKey(name + ".example")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := checkpoint.NewWitnessSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWitness{t: t, name: name, signer: signer, vkey: vkey, spoil: spoil, delay: delay}
	w.hs = httptest.NewServer(http.HandlerFunc(w.addCheckpoint))
	t.Cleanup(w.hs.Close)
	return w
}

func (w *fakeWitness) addCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body) // first: the server notices a client that hangs up only after the body
	if w.hung.Load() {
		if w.arrived != nil {
			w.arrived <- struct{}{}
		}
		<-r.Context().Done()
		return
	}
	head, signed, ok := bytes.Cut(body, []byte("\n\n"))
	old, err := strconv.ParseUint(strings.TrimPrefix(strings.SplitN(string(head), "\n", 2)[0], "old "), 10, 64)
	if !ok || err != nil {
		http.Error(rw, "bad request", http.StatusBadRequest)
		return
	}
	text := signed[:bytes.LastIndex(signed, []byte("\n\n"))+1]
	c, err := checkpoint.Parse(text)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	if old != w.size {
		size := w.size
		w.mu.Unlock()
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintf(rw, "%d\n", size)
		return
	}
	w.size = c.Size
	w.mu.Unlock()
	cosigned, err := checkpoint.Sign(c, w.signer)
	if err != nil {
		w.t.Error(err)
		return
	}
	line := string(cosigned[bytes.LastIndex(cosigned, []byte("\n\n"))+2:])
	if w.spoil != nil {
		line = w.spoil(line)
	}
	if w.delay > 0 {
		select {
		case <-time.After(w.delay):
		case <-r.Context().Done(): // Tessera gave up on it, or the test ended
			return
		}
	}
	rw.Write([]byte(line))
}

// nonCanonicalBase64 sets the padding bits of a cosignature line's last
// base64 character: encoding/base64 (and so sumdb/note and Tessera) still
// decodes it to the same signature, strict verifiers refuse it.
func nonCanonicalBase64(line string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := strings.IndexByte(line, '=') - 1 // the last data character
	v := strings.IndexByte(alphabet, line[i])
	return line[:i] + string(alphabet[v|1]) + line[i+1:]
}

// witnessedLog starts a log whose policy has the witnesses, with a quorum of
// k of them.
func witnessedLog(t *testing.T, k int, ws ...*fakeWitness) *testLog {
	t.Helper()
	return newTestLog(t, func(c *Config) {
		var b strings.Builder
		b.WriteString("log " + c.Keys.VKeys[0] + "\n")
		var names []string
		for _, w := range ws {
			fmt.Fprintf(&b, "witness %s %s %s\n", w.name, w.vkey, w.hs.URL)
			names = append(names, w.name)
		}
		fmt.Fprintf(&b, "group g %d %s\nquorum g\n", k, strings.Join(names, " "))
		p, err := checkpoint.ParsePolicy([]byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		c.Policy, c.PolicyText = p, []byte(b.String())
		c.WitnessTimeout = 3 * time.Second
		c.WitnessWaitTimeout = 20 * time.Second
	})
}

// Hole 3 of issue 9: a witness whose cosignature is in non-canonical base64
// was copied verbatim into the published checkpoint, which the log's own
// verifiers refuse: no receipt for anyone, with 2 of 3 witnesses honest.
// The honest witness "slow" answers last, so that the quorum is met with
// the spoiled cosignature.
func TestNonCanonicalCosignatureDoesNotStopReceipts(t *testing.T) {
	fast := newFakeWitness(t, "fast", nil, 0)
	slow := newFakeWitness(t, "slow", nil, 1500*time.Millisecond)
	odd := newFakeWitness(t, "odd", nonCanonicalBase64, 0)
	tl := witnessedLog(t, 2, fast, slow, odd)
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"action":"deploy"}`))
	var a witnessedAnswer
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
		t.Fatalf("wait=witnessed with a witness in non-canonical base64: %d %s", r.status, r.body)
	}
	if _, cos, err := a.Receipt.Verify(tl.policy()); err != nil {
		t.Fatalf("receipt does not verify: %v", err)
	} else if _, ok := cos["odd"]; !ok {
		t.Logf("cosigned by %v", cos)
	}
	// Every published checkpoint passes the log's own strict verifier.
	cp := tl.get("/checkpoint").body
	if _, _, err := tl.policy().Verify(cp); err != nil {
		t.Errorf("published checkpoint refused by the policy: %v\n%s", err, cp)
	}
	if r := tl.get("/v1/receipt/0"); r.status != 200 {
		t.Errorf("GET /v1/receipt/0: %d %s", r.status, r.body)
	}
}

// A witness that answers 200 with something other than its cosignature (a
// signature that does not verify, or garbage) is counted as failing, and the
// honest quorum still gets the checkpoint published.
func TestWitnessAnsweringGarbageIsAFailure(t *testing.T) {
	garbage := newFakeWitness(t, "garbage", func(string) string { return "hello\n" }, 0)
	forged := newFakeWitness(t, "forged", func(line string) string {
		sig, _ := base64.StdEncoding.DecodeString(line[strings.LastIndexByte(line[:len(line)-1], ' ')+1 : len(line)-1])
		sig[len(sig)-1] ^= 1
		return line[:strings.LastIndexByte(line[:len(line)-1], ' ')+1] + base64.StdEncoding.EncodeToString(sig) + "\n"
	}, 0)
	honest1 := newFakeWitness(t, "honest1", nil, 0)
	honest2 := newFakeWitness(t, "honest2", nil, 0)
	tl := witnessedLog(t, 2, garbage, forged, honest1, honest2)
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"action":"deploy"}`))
	var a witnessedAnswer
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
		t.Fatalf("wait=witnessed: %d %s", r.status, r.body)
	}
	_, cos, err := a.Receipt.Verify(tl.policy())
	if err != nil {
		t.Fatalf("receipt does not verify: %v", err)
	}
	if _, ok := cos["garbage"]; ok {
		t.Errorf("garbage counted as a cosigner")
	}
	if _, ok := cos["forged"]; ok {
		t.Errorf("a forged cosignature counted")
	}
	// The quorum (the two honest witnesses) may be met before the others
	// answer, and Tessera then cancels their requests: each new event is
	// another round, until both bad answers have been seen and counted.
	counted := func(w string) bool {
		m := string(tl.get("/metrics").body)
		line := `tidemark_log_witness_requests_total{outcome="invalid_cosignature",witness="` + w + `"} `
		i := strings.Index(m, line)
		if i < 0 {
			return false
		}
		v := m[i+len(line):]
		v = v[:strings.IndexByte(v, '\n')]
		return v != "0"
	}
	for round := 0; !(counted("garbage") && counted("forged")); round++ {
		if round == 50 {
			t.Fatalf("after %d witnessed events, garbage counted %v and forged %v as invalid_cosignature", round, counted("garbage"), counted("forged"))
		}
		if r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(fmt.Sprintf(`{"action":"deploy","n":%d}`, round))); r.status != 200 {
			t.Fatalf("wait=witnessed: %d %s", r.status, r.body)
		}
	}
}

// A witness that never answers holds up nothing once the others make the
// quorum: receipts come, and writes go on.
func TestHangingWitnessDoesNotStopTheLog(t *testing.T) {
	hang := newFakeWitness(t, "hang", nil, time.Hour)
	tl := witnessedLog(t, 2, hang, newFakeWitness(t, "a", nil, 0), newFakeWitness(t, "b", nil, 0))
	for i := range 3 {
		r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(fmt.Sprintf(`{"n":%d}`, i)))
		var a witnessedAnswer
		if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
			t.Fatalf("event %d with a witness that hangs: %d %s", i, r.status, r.body)
		}
	}
	// Each witnessed checkpoint's round met the quorum without it, and
	// each group of entries got its delay to a witnessed checkpoint.
	for _, name := range []string{"tidemark_log_witness_quorum_seconds_count", "tidemark_log_witnessed_delay_seconds_count"} {
		if n, _ := strconv.Atoi(tl.metric(name)); n < 1 {
			t.Errorf("%s = %q after three receipts, want at least 1", name, tl.metric(name))
		}
	}
}

func TestCanonicalCosignature(t *testing.T) {
	w := newFakeWitness(t, "w", nil, 0)
	skey, _, _ := checkpoint.GenerateLogKey("test.example/log")
	ls, _ := checkpoint.NewLogSigner(skey)
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "test.example/log", Size: 3, Hash: make([]byte, 32)}, ls)
	if err != nil {
		t.Fatal(err)
	}
	text := signed[:bytes.LastIndex(signed, []byte("\n\n"))+1]
	c, _ := checkpoint.Parse(text)
	cosigned, _ := checkpoint.Sign(c, w.signer)
	good := string(cosigned[bytes.LastIndex(cosigned, []byte("\n\n"))+2:])
	key, err := checkpoint.NewWitnessVerifier(w.vkey)
	if err != nil {
		t.Fatal(err)
	}
	other := newFakeWitness(t, "other", nil, 0)
	otherCos, _ := checkpoint.Sign(c, other.signer)
	otherLine := string(otherCos[bytes.LastIndex(otherCos, []byte("\n\n"))+2:])
	for _, tc := range []struct {
		name, answer string
		ok           bool
	}{
		{"canonical", good, true},
		{"non-canonical padding bits", nonCanonicalBase64(good), true},
		{"after another key's line", otherLine + good, true},
		{"another key's line only", otherLine, false},
		{"empty", "", false},
		{"not a signature line", "— w.example notbase64!\n", false},
		{"truncated", good[:len(good)-10] + "\n", false},
	} {
		line, why := canonicalCosignature([]byte(tc.answer), signed, key)
		if (why == "") != tc.ok {
			t.Errorf("%s: why = %q, want ok=%v", tc.name, why, tc.ok)
			continue
		}
		if tc.ok && string(line) != good {
			t.Errorf("%s: line = %q, want the canonical %q", tc.name, line, good)
		}
	}
}

// A request Tessera makes after its round is over (the quorum was met
// without it) is no missed quorum: sent with its context already canceled,
// or canceled once sent; a round in which witnesses do fail still is one.
func TestWitnessStragglerIsNoQuorumFailure(t *testing.T) {
	skey, vkey, _ := checkpoint.GenerateLogKey("test.example/log")
	logSigner, _ := checkpoint.NewLogSigner(skey)
	observer := func(ws ...*fakeWitness) *witnessObserver {
		var b strings.Builder
		b.WriteString("log " + vkey + "\n")
		names := map[string]string{}
		for _, w := range ws {
			fmt.Fprintf(&b, "witness %s %s %s\n", w.name, w.vkey, w.hs.URL)
			names[w.hs.URL+"/add-checkpoint"] = w.name
		}
		b.WriteString("group g 2 " + ws[0].name + " " + ws[1].name + " " + ws[2].name + "\nquorum g\n")
		p, err := checkpoint.ParsePolicy([]byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		o, err := newWitnessObserver(http.DefaultTransport.(*http.Transport).Clone(), names, p, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	cp := func(size uint64) []byte {
		signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "test.example/log", Size: size, Hash: bytes.Repeat([]byte{byte(size)}, 32)}, logSigner)
		if err != nil {
			t.Fatal(err)
		}
		return signed
	}
	send := func(ctx context.Context, o *witnessObserver, w *fakeWitness, old uint64, signed []byte) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.hs.URL+"/add-checkpoint", strings.NewReader(fmt.Sprintf("old %d\n\n%s", old, signed)))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := o.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	w1, w2 := newFakeWitness(t, "w1", nil, 0), newFakeWitness(t, "w2", nil, 0)
	w3 := newFakeWitness(t, "w3", nil, 0)
	w3.hung.Store(true)
	w3.arrived = make(chan struct{}, 1)
	o := observer(w1, w2, w3)
	ctx := t.Context()
	a := cp(1)
	for _, w := range []*fakeWitness{w1, w2} {
		if code, err := send(ctx, o, w, 0, a); code != 200 || err != nil {
			t.Fatalf("%s: %d %v", w.name, code, err)
		}
	}
	// The quorum is met: Tessera cancels the request to w3, before it is
	// sent, or once it is.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := send(gone, o, w3, 0, a); err == nil {
		t.Fatal("a request with a canceled context got an answer")
	}
	late, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { _, err := send(late, o, w3, 0, a); done <- err }()
	<-w3.arrived
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a canceled request got an answer")
	}
	b := cp(2)
	for _, w := range []*fakeWitness{w1, w2} {
		if code, err := send(ctx, o, w, 1, b); code != 200 || err != nil {
			t.Fatalf("%s: %d %v", w.name, code, err)
		}
	}
	if n := counterValue(t, o.quorumFailures); n != 0 {
		t.Errorf("%v quorum failures counted for requests Tessera gave up on after the quorum", n)
	}
	if n := counterValue(t, o.requests.WithLabelValues("w3", outcomeCanceled)); n != 2 {
		t.Errorf("w3's canceled requests: %v, want 2", n)
	}

	// Witnesses that answer with garbage do make a missed quorum.
	garbage := func(string) string { return "hello\n" }
	g1, g2, g3 := newFakeWitness(t, "g1", garbage, 0), newFakeWitness(t, "g2", garbage, 0), newFakeWitness(t, "g3", garbage, 0)
	o = observer(g1, g2, g3)
	for _, w := range []*fakeWitness{g1, g2, g3} {
		if code, err := send(ctx, o, w, 0, a); code != http.StatusBadGateway || err != nil {
			t.Fatalf("%s: %d %v, want 502", w.name, code, err)
		}
	}
	if n := counterValue(t, o.quorumFailures); n != 1 {
		t.Errorf("%v quorum failures for a round where every witness failed, want 1", n)
	}
}
