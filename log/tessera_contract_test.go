package log

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/testmysql"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/mysql"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/sumdb/note"
)

// The Tessera contract: what Tidemark assumes of Tessera v1.0.4's
// internals, asserted directly against Tessera (not through the server),
// so that an upgrade that changes any of it fails here, saying which code
// to revisit, instead of somewhere far from the cause.

const tesseraModule = "github.com/transparency-dev/tessera"

// tesseraPinned is the version the assumptions below were checked against.
const tesseraPinned = "v1.0.4"

// revisitOnUpgrade is the code that names Tessera v1.0.4 in its comments
// and relies on what it does.
const revisitOnUpgrade = `storage.go (errno flattening, the lock-file panic), appendqueue.go and server.go (checkWritable before each group), strays.go (temporary files left behind), witnessing.go and witnessbreaker.go (witness traffic), awaiter.go (the checkpoint written just after its witness round), receipts.go (proofNodes: the tile layout), server.go (DefaultMySQLCheckpointInterval), backend.go (mysqlDriver.appenderWith, trimsReads), migrate.go and migrate_s3.go (what the migrations leave), s3.go (doublePrefixMiddleware)`

// TestTesseraContractVersion: the module requires, and the test binary
// links, the Tessera version the contract was checked against.
func TestTesseraContractVersion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.ParseLax("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	var required string
	for _, r := range mf.Require {
		if r.Mod.Path == tesseraModule {
			required = r.Mod.Version
		}
	}
	for _, r := range mf.Replace {
		if r.Old.Path == tesseraModule {
			t.Errorf("go.mod replaces %s with %s %s: the Tessera contract was checked against %s %s; revisit %s, then this test",
				tesseraModule, r.New.Path, r.New.Version, tesseraModule, tesseraPinned, revisitOnUpgrade)
		}
	}
	if required != tesseraPinned {
		t.Errorf("go.mod requires %s %q; Tidemark's assumptions about Tessera were checked against %s. Revisit %s, and the other tests in tessera_contract_test.go, then update tesseraPinned",
			tesseraModule, required, tesseraPinned, revisitOnUpgrade)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == tesseraModule && d.Version != tesseraPinned {
				t.Errorf("the test binary links %s %s, not %s: revisit %s", tesseraModule, d.Version, tesseraPinned, revisitOnUpgrade)
			}
		}
	}
}

// contractRequest is one HTTP request Tessera made, as its client's
// transport saw it.
type contractRequest struct {
	method, url string
	body        []byte
	status      int
	contentType string // of the answer
	err         error
	ctxErr      error // the request's context, once it was answered
}

// contractTransport records the requests made with it.
type contractTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []contractRequest
}

func (c *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := c.next.RoundTrip(req)
	r := contractRequest{method: req.Method, url: req.URL.String(), body: body, err: err, ctxErr: req.Context().Err()}
	if resp != nil {
		r.status, r.contentType = resp.StatusCode, resp.Header.Get("Content-Type")
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	c.mu.Unlock()
	return resp, err
}

func (c *contractTransport) requests() []contractRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]contractRequest(nil), c.reqs...)
}

// splitWitnessRequest splits a tlog-witness add-checkpoint body as
// Tidemark does (witnessObserver.RoundTrip): the signed checkpoint is what
// follows the first blank line.
func splitWitnessRequest(body []byte) (old uint64, proof [][]byte, signed []byte, err error) {
	i := bytes.Index(body, []byte("\n\n"))
	if i < 0 {
		return 0, nil, nil, errors.New("no blank line")
	}
	lines := strings.Split(string(body[:i]), "\n")
	o, ok := strings.CutPrefix(lines[0], "old ")
	if !ok {
		return 0, nil, nil, fmt.Errorf("first line %q is not \"old <size>\"", lines[0])
	}
	if old, err = strconv.ParseUint(o, 10, 64); err != nil {
		return 0, nil, nil, err
	}
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(h) != 32 {
			return 0, nil, nil, fmt.Errorf("proof line %q is not a base64 hash", l)
		}
		proof = append(proof, h)
	}
	return old, proof, body[i+2:], nil
}

// contractWitness is a tlog-witness that cosigns every checkpoint, except
// that it answers the first request for a tree of two entries or more with
// 409 text/x.tlog.size "1" (it claims to have cosigned size 1), and that
// its cosignature lines are in non-canonical base64 (non-zero padding
// bits), which sumdb/note accepts.
type contractWitness struct {
	t       *testing.T
	logKey  note.Verifier
	signer  note.Signer
	vkey    string
	srv     *httptest.Server
	mu      sync.Mutex
	sent409 bool
	lines   map[string]bool // the cosignature lines it answered with
}

func newContractWitness(t *testing.T, name string, logKey note.Verifier) *contractWitness {
	skey, vkey, err := checkpoint.GenerateWitnessKey(name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := checkpoint.NewWitnessSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	w := &contractWitness{t: t, logKey: logKey, signer: signer, vkey: vkey, lines: map[string]bool{}}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *contractWitness) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	old, _, signed, err := splitWitnessRequest(body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	n, err := note.Open(signed, note.VerifierList(w.logKey))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusForbidden)
		return
	}
	size, err := strconv.ParseUint(strings.Split(n.Text, "\n")[1], 10, 64)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	if !w.sent409 && size >= 2 && old == 0 {
		w.sent409 = true
		w.mu.Unlock()
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintln(rw, 1)
		return
	}
	w.mu.Unlock()
	cosigned, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	line := nonCanonicalLine(w.t, cosigned[len(n.Text)+1:])
	w.mu.Lock()
	w.lines[string(line)] = true
	w.mu.Unlock()
	rw.Write(line)
}

// nonCanonicalLine sets a padding bit of the base64 of a signature line
// "— name base64==\n" (a cosignature/v1 signature is 76 bytes: two
// padding characters, four padding bits).
func nonCanonicalLine(t *testing.T, line []byte) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	s := strings.TrimSuffix(string(line), "\n")
	if !strings.HasSuffix(s, "==") {
		t.Fatalf("cosignature line %q: want two padding characters", s)
	}
	i := len(s) - 3
	k := strings.IndexByte(alphabet, s[i])
	if k < 0 || k%16 != 0 {
		t.Fatalf("cosignature line %q: unexpected last data character", s)
	}
	return []byte(s[:i] + string(alphabet[k+1]) + "==\n")
}

// hangingWitness never answers: a request to it ends only when Tessera
// gives up on it.
func hangingWitness(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server notice the client
		// going away, and cancel r's context.
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// contractLogKey makes a log key pair for the contract tests.
func contractLogKey(t *testing.T) (note.Signer, note.Verifier) {
	skey, vkey, err := checkpoint.GenerateLogKey("contract.example/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := checkpoint.NewLogSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := checkpoint.NewLogVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func contractNewWitness(t *testing.T, vkey, root string) tessera.Witness {
	u, err := url.Parse(root)
	if err != nil {
		t.Fatal(err)
	}
	tw, err := tessera.NewWitness(vkey, u)
	if err != nil {
		t.Fatal(err)
	}
	return tw
}

// addAndAwait adds n entries at once and waits until a checkpoint of at
// least n entries is published that carries a cosignature line of w.
func addAndAwait(t *testing.T, ctx context.Context, a *tessera.Appender, r tessera.LogReader, w *contractWitness, n int) []byte {
	t.Helper()
	var futures []tessera.IndexFuture
	for i := range n {
		futures = append(futures, a.Add(ctx, tessera.NewEntry(fmt.Appendf(nil, "entry %d", i))))
	}
	for _, f := range futures {
		if _, err := f(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cp, err := r.ReadCheckpoint(ctx)
		if err == nil {
			lines := strings.Split(string(cp), "\n")
			size, _ := strconv.ParseUint(lines[1], 10, 64)
			w.mu.Lock()
			cosigned := false
			for l := range w.lines {
				cosigned = cosigned || bytes.Contains(cp, []byte(l))
			}
			w.mu.Unlock()
			if size >= uint64(n) && cosigned {
				return cp
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no cosigned checkpoint of %d entries within 30 s", n)
	return nil
}

// TestTesseraContractWitnessRequests: how Tessera v1.0.4 talks to
// witnesses, as witnessObserver (witnessing.go) and witnessBreaker
// (witnessbreaker.go) read it from its HTTP traffic.
func TestTesseraContractWitnessRequests(t *testing.T) {
	const revisit = "revisit witnessing.go (witnessObserver.RoundTrip, roundFor, checkCosignature), witnessbreaker.go (it resends a recorded request) and policy.go (witnessGroup keys witnesses by their add-checkpoint URL)"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logSigner, logKey := contractLogKey(t)
	w1 := newContractWitness(t, "w1.contract.example", logKey)
	_, w2vkey, err := checkpoint.GenerateWitnessKey("w2.contract.example")
	if err != nil {
		t.Fatal(err)
	}
	w2srv := hangingWitness(t)

	tw1 := contractNewWitness(t, w1.vkey, w1.srv.URL+"/base")
	tw2 := contractNewWitness(t, w2vkey, w2srv.URL)
	if want := w1.srv.URL + "/base/add-checkpoint"; tw1.URL != want {
		t.Fatalf("tessera.NewWitness(root %s/base).URL = %q, want %q: %s", w1.srv.URL, tw1.URL, want, revisit)
	}

	rec := &contractTransport{next: http.DefaultTransport}
	driver, err := posix.New(ctx, posix.Config{Path: t.TempDir(), HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(logSigner).
		WithBatching(256, 10*time.Millisecond).
		WithCheckpointInterval(100*time.Millisecond).
		WithCheckpointRepublishInterval(0).
		WithWitnesses(tessera.NewWitnessGroup(1, tw1, tw2), &tessera.WitnessOptions{Timeout: 20 * time.Second})
	a, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()

	published := addAndAwait(t, ctx, a, reader, w1, 3)

	reqs := rec.requests()
	var toW1, toW2 []contractRequest
	for _, r := range reqs {
		switch r.url {
		case tw1.URL:
			toW1 = append(toW1, r)
		case tw2.URL:
			toW2 = append(toW2, r)
		default:
			t.Errorf("Tessera requested %s %s, not a witness's add-checkpoint URL: %s", r.method, r.url, revisit)
		}
	}
	if len(toW1) == 0 {
		t.Fatalf("no witness request went through the HTTP client given to posix.New (Config.HTTPClient): %s, and backend.go (openBackend)", revisit)
	}

	// Every request is a POST whose body is "old N", proof lines, a blank
	// line and the signed checkpoint, which is what follows the first
	// blank line.
	for _, r := range reqs {
		if r.method != http.MethodPost {
			t.Errorf("witness request %s %s: want POST: %s", r.method, r.url, revisit)
		}
		if _, _, signed, err := splitWitnessRequest(r.body); err != nil {
			t.Errorf("witness request body %q: %v: %s", r.body, err, revisit)
		} else if _, err := note.Open(signed, note.VerifierList(logKey)); err != nil {
			t.Errorf("witness request: what follows the first blank line is not the log's signed checkpoint (%v): %q: %s", err, signed, revisit)
		}
	}

	// After a 409 text/x.tlog.size, Tessera asks the same witness again,
	// with the same checkpoint bytes and the witness's size as the old
	// size: one round, which roundFor tells by the checkpoint bytes.
	retried := false
	for i, r := range toW1 {
		if r.status != http.StatusConflict {
			continue
		}
		if r.contentType != "text/x.tlog.size" {
			t.Fatalf("the witness's 409 reached Tessera's client with Content-Type %q", r.contentType)
		}
		if i+1 >= len(toW1) {
			t.Fatalf("after a 409 text/x.tlog.size, Tessera did not ask the witness again: %s", revisit)
		}
		_, _, signed, _ := splitWitnessRequest(r.body)
		old, proof, again, _ := splitWitnessRequest(toW1[i+1].body)
		if !bytes.Equal(signed, again) || old != 1 || len(proof) == 0 {
			t.Errorf("after a 409 text/x.tlog.size \"1\", Tessera's next request was old %d with %d proof lines for %q; want old 1, a proof, and the same checkpoint %q: %s",
				old, len(proof), again, signed, revisit)
		}
		retried = true
	}
	if !retried {
		t.Fatalf("the witness never answered 409 (the test's entries were not integrated in one batch?); the retry was not checked")
	}

	// Once the quorum is met, Tessera cancels the requests still out: the
	// observer counts those as canceled by their context's error.
	if len(toW2) == 0 {
		t.Fatalf("Tessera did not ask the second witness: %s", revisit)
	}
	for _, r := range toW2 {
		if r.err == nil || !errors.Is(r.ctxErr, context.Canceled) {
			t.Errorf("a request to a witness that never answers ended with err %v, context %v; want an error and context.Canceled once the quorum was met: %s (outcomeCanceled)", r.err, r.ctxErr, revisit)
		}
	}

	// Tessera copies a witness's cosignature line into the published
	// checkpoint as the witness wrote it, non-canonical base64 included.
	// checkCosignature exists for that; if Tessera now canonicalizes or
	// refuses such lines, it may be simplified.
	found := false
	w1.mu.Lock()
	for l := range w1.lines {
		found = found || bytes.Contains(published, []byte(l))
	}
	w1.mu.Unlock()
	if !found {
		t.Errorf("the published checkpoint does not hold the witness's non-canonical cosignature line verbatim:\n%s\n%s", published, revisit)
	}
}

// TestTesseraContractMySQL: Tessera v1.0.4's MySQL driver asks witnesses
// with the http.DefaultClient of the moment its appender is made (it has no
// option for a client), and returns a whole stored tile or entry bundle
// when a smaller partial one is asked for.
func TestTesseraContractMySQL(t *testing.T) {
	dsn := testmysql.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := openMySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := applySchema(ctx, db, tesseraMySQLSchema); err != nil {
		t.Fatal(err)
	}
	st, err := mysql.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	logSigner, logKey := contractLogKey(t)
	w := newContractWitness(t, "w.contract.example", logKey)
	tw := contractNewWitness(t, w.vkey, w.srv.URL)
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(logSigner).
		WithBatching(256, 10*time.Millisecond).
		WithCheckpointInterval(DefaultMySQLCheckpointInterval). // the least MySQL takes
		WithCheckpointRepublishInterval(0).
		WithWitnesses(tessera.NewWitnessGroup(1, tw), &tessera.WitnessOptions{Timeout: 20 * time.Second})

	// The default interval on MySQL is the least the driver takes: one
	// under it is refused.
	short := *opts
	short.WithCheckpointInterval(DefaultMySQLCheckpointInterval - time.Millisecond)
	if _, _, _, err := tessera.NewAppender(ctx, st, &short); err == nil {
		t.Errorf("Tessera's MySQL driver takes a checkpoint interval under %s: revisit DefaultMySQLCheckpointInterval (server.go), the default of --checkpoint-interval with --mysql", DefaultMySQLCheckpointInterval)
	}

	// As mysqlDriver.appenderWith does: the default client is the witness
	// client while the appender is made, and is put back at once.
	rec := &contractTransport{next: http.DefaultTransport}
	mysqlDefaultClientMu.Lock()
	saved := http.DefaultClient
	http.DefaultClient = &http.Client{Transport: rec}
	a, shutdown, reader, err := tessera.NewAppender(ctx, st, opts)
	http.DefaultClient = saved
	mysqlDefaultClientMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()

	addAndAwait(t, ctx, a, reader, w, 3)
	n := 0
	for _, r := range rec.requests() {
		if r.url == tw.URL {
			n++
		}
	}
	if n == 0 {
		t.Errorf("Tessera's MySQL appender did not ask the witness with the http.DefaultClient it was made with: revisit backend.go (mysqlDriver.appenderWith) and witnessing.go, which see witness traffic only through that client")
	}

	// The tree holds 3 entries: a partial read of 1 comes back whole.
	const revisit = "revisit backend.go (trimsReads, trimTile, trimBundle) and tiles.go (serveStoredTile)"
	bundle, err := reader.ReadEntryBundle(ctx, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if one, ok := trimBundle(bundle, 1); !ok || len(one) == len(bundle) {
		t.Errorf("ReadEntryBundle(0, p=1) on MySQL returned %d bytes, not the whole bundle of 3 entries: Tessera now trims partial bundles itself; %s", len(bundle), revisit)
	}
	if _, ok := trimBundle(bundle, 3); !ok {
		t.Errorf("ReadEntryBundle(0, p=1) on MySQL returned %d bytes that do not hold 3 entries: %s", len(bundle), revisit)
	}
	tile, err := reader.ReadTile(ctx, 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(tile) != 3*32 {
		t.Errorf("ReadTile(0, 0, p=1) on MySQL returned %d bytes, want the whole stored tile of 3 hashes (96 bytes): %s", len(tile), revisit)
	}
}
