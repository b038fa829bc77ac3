package log

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	m := string(tl.get("/metrics").body)
	for _, w := range []string{"garbage", "forged"} {
		if strings.Contains(m, `tidemark_log_witness_requests_total{outcome="invalid_cosignature",witness="`+w+`"} 0`) {
			t.Errorf("%s's answers not counted as invalid_cosignature", w)
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
