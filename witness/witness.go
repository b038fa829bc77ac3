package witness

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/pkcs11key"
	"golang.org/x/mod/sumdb/note"
)

// KeyFile is where a witness keeps the key it created for itself, and
// PubFile its verifier key.
const (
	KeyFile = "witness.key"
	PubFile = "witness.pub"
)

// Config configures a witness. Zero values take the defaults below.
type Config struct {
	// Dir holds the state (witness.db) and, unless KeyFile is set, the key
	// (witness.key), created together on the first start.
	Dir string
	// KeyFile is the witness's secret key (a cosignature/v1 key, as
	// `tidemark keygen --witness` writes). Default: Dir/witness.key. A
	// pkcs11: URI instead names an Ed25519 key in a PKCS#11 token (package
	// pkcs11key), which Name must then name; a new witness whose key is in
	// a token starts the first time with Init.
	KeyFile string
	// Name names the key created on the first start (default: the host
	// name followed by "/witness"). Once the key exists, a Name other than
	// the key's is refused rather than ignored; leave it empty to take the
	// key's.
	Name string
	// Init allows starting with a key but no state: a new witness with a
	// key made elsewhere, or, knowingly, one whose state was lost (it will
	// cosign again from size 0 whatever it cosigned before).
	Init bool

	// LogsFile is the witness-network log list (logs/v0) of the logs that
	// may push checkpoints. FollowFile lists logs the witness polls itself
	// ("log VKEY URL" lines). Either may be empty; Reload reads both again.
	LogsFile   string
	FollowFile string

	GlobalQPS    float64       // add-checkpoint requests a second that advance state, all logs together (default 5,000; negative: no limit)
	PollInterval time.Duration // how often followed logs are polled (default 5 s)
	MaxEvidence  int           // items of evidence kept per log (default 16)
	HTTPClient   *http.Client  // for polling (default: 10 s timeout)
	// RootCAs are the CAs trusted for HTTPS followed logs when HTTPClient
	// is nil (default: the system's roots).
	RootCAs *x509.CertPool

	Logger   *slog.Logger
	Registry *prometheus.Registry // metrics go here (default: a new registry)
	Now      func() time.Time     // the clock for rate limits and records (default time.Now)
}

// Defaults of Config (DefaultMaxEvidence too), in one place: setDefaults
// applies them and the command's flags show them.
const (
	DefaultGlobalQPS    = 5000
	DefaultPollInterval = 5 * time.Second
)

// DefaultName is the name of a key created when none is given: the host
// name followed by "/witness".
func DefaultName() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "localhost"
	}
	return h + "/witness"
}

func (c *Config) setDefaults() {
	if c.GlobalQPS == 0 {
		c.GlobalQPS = DefaultGlobalQPS
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxEvidence == 0 {
		c.MaxEvidence = DefaultMaxEvidence
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
		if c.RootCAs != nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12}
			c.HTTPClient.Transport = t
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// A Witness is a running witness. Create it with New, serve Handler, and
// Close it to stop.
type Witness struct {
	cfg     Config
	log     *slog.Logger
	signer  note.Signer
	vkey    string
	created bool   // the key was made by New
	newSKey string // the key New made, until it is written
	now     func() time.Time

	logs     atomic.Pointer[logTable]
	state    *state
	evidence *evidenceStore
	limits   *limiter
	metrics  *metrics
	inflight chan struct{} // a token per add-checkpoint request being handled

	reloadMu sync.Mutex // serializes Reload
	ctx      context.Context
	cancel   context.CancelFunc
	pollDone chan struct{}
}

// New opens (or on the first start creates) the witness's key and state in
// cfg.Dir, reads its log lists and starts the poller. A key and its state
// are one identity: New refuses a key without state (unless cfg.Init), a
// state without its key, and a state made for another key. Everything is
// checked before anything is created, so a start that New refuses (a bad
// log list, a Name that is not the key's, ...) leaves cfg.Dir as it was.
func New(ctx context.Context, cfg Config) (*Witness, error) {
	cfg.setDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("a witness needs a data directory")
	}
	w := &Witness{cfg: cfg, log: cfg.Logger, now: cfg.Now, inflight: make(chan struct{}, 4096), pollDone: make(chan struct{})}
	table, err := w.readLists()
	if err != nil {
		return nil, err
	}
	dbPath := filepath.Join(cfg.Dir, DBFile)
	dbExists, err := stateExists(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := w.loadKey(dbExists); err != nil {
		return nil, err
	}
	if !dbExists && !w.created && !cfg.Init {
		return nil, fmt.Errorf("there is a witness key (%s) but no state (%s): a witness that lost its state could cosign a checkpoint inconsistent with one it cosigned before. "+
			"Restore %s from a backup; if this key never cosigned anything (or you accept that risk), start once with --init", pkcs11key.Redact(w.keyPath()), dbPath, DBFile)
	}

	// Checked: now create.
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("couldn't create the data directory: %w", err)
	}
	if err := w.writeNewKey(); err != nil {
		return nil, err
	}
	if w.state, err = openState(cfg.Dir, w.vkey, !dbExists); err != nil {
		return nil, err
	}
	if w.evidence, err = loadEvidence(w.state.db, cfg.MaxEvidence); err != nil {
		w.state.close()
		return nil, err
	}
	w.storeLists(table)
	if w.metrics, err = newMetrics(w, cfg.Registry); err != nil {
		w.state.close()
		return nil, err
	}
	w.state.onBatch = func(n int, d time.Duration) {
		w.metrics.batchSize.Observe(float64(n))
		w.metrics.commitSeconds.Observe(d.Seconds())
	}
	globalQPS := cfg.GlobalQPS
	if globalQPS < 0 {
		globalQPS = 0
	}
	w.limits = newLimiter(globalQPS, cfg.Now)
	w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go w.poll()
	return w, nil
}

// stateExists reports whether dir holds witness state. A zero-length
// witness.db with no non-empty witness.db-wal is not state: it is what a
// first start leaves when it dies between creating the file and its first
// commit, and it holds nothing the witness could have cosigned. Counting it
// as state would let a key that lost its real state start without --init,
// or refuse a first start for want of a key.
func stateExists(dir string) (bool, error) {
	for _, name := range []string{DBFile, DBFile + "-wal"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("couldn't look for the witness state: %w", err)
		}
		if fi.Size() > 0 {
			return true, nil
		}
	}
	return false, nil
}

func (w *Witness) keyPath() string {
	if w.cfg.KeyFile != "" {
		return w.cfg.KeyFile
	}
	return filepath.Join(w.cfg.Dir, KeyFile)
}

// loadKey reads the witness key, or makes one (in memory: writeNewKey
// writes it) when there is no --key, no key file and no state yet.
func (w *Witness) loadKey(dbExists bool) error {
	if pkcs11key.IsURI(w.cfg.KeyFile) {
		return w.loadPKCS11Key()
	}
	path := w.keyPath()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && w.cfg.KeyFile == "" {
		if dbExists {
			return fmt.Errorf("there is witness state (%s) but no key (%s): restore the key; a new key would be a new witness with someone else's memory", filepath.Join(w.cfg.Dir, DBFile), path)
		}
		name := w.cfg.Name
		if name == "" {
			name = DefaultName()
		}
		skey, _, err := checkpoint.GenerateWitnessKey(name)
		if err != nil {
			return err
		}
		w.created, w.newSKey = true, skey
		b = []byte(skey + "\n")
	} else if err != nil {
		return fmt.Errorf("couldn't read the witness key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	if w.signer, err = checkpoint.NewWitnessSigner(skey); err != nil {
		return fmt.Errorf("witness key %s: %w", path, err)
	}
	if w.vkey, err = witnessVKey(skey); err != nil {
		return fmt.Errorf("witness key %s: %w", path, err)
	}
	if w.cfg.Name != "" && w.cfg.Name != w.signer.Name() {
		return fmt.Errorf("name %q was given, but the witness key %s is named %q: a witness's name is its key's, fixed when the key was made. "+
			"Give the key's name or none; a witness with another name needs its own key and data directory", w.cfg.Name, path, w.signer.Name())
	}
	return nil
}

// loadPKCS11Key opens a witness key held in a PKCS#11 token. The token
// holds no name: cfg.Name (--name) names the key, and with the public key
// makes the vkey, which the state is tied to, so the same name must be
// given at every start.
func (w *Witness) loadPKCS11Key() error {
	if w.cfg.Name == "" {
		return errors.New("a pkcs11: witness key needs --name: the name names the key, and with the public key makes the verifier key")
	}
	k, err := pkcs11key.Open(w.cfg.KeyFile)
	if err != nil {
		return err
	}
	if w.signer, w.vkey, err = checkpoint.NewWitnessSignerFrom(w.cfg.Name, k); err != nil {
		k.Close()
		return err
	}
	return nil
}

// writeNewKey writes the key loadKey made, with its verifier key beside it.
func (w *Witness) writeNewKey() error {
	if w.newSKey == "" {
		return nil
	}
	path := w.keyPath()
	if err := writeFileExcl(path, []byte(w.newSKey+"\n"), 0o600); err != nil {
		return fmt.Errorf("couldn't write the new key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(w.cfg.Dir, PubFile), []byte(w.vkey+"\n"), 0o644); err != nil {
		return fmt.Errorf("couldn't write the verifier key: %w", err)
	}
	w.newSKey = ""
	return nil
}

// witnessVKey returns the verifier key of a cosignature/v1 secret key
// (PRIVATE+KEY+name+hash+base64(0x04 || seed)), which NewWitnessSigner has
// already checked.
func witnessVKey(skey string) (string, error) {
	f := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(f[len(f)-1])
	if len(f) != 5 || err != nil || len(raw) != 1+ed25519.SeedSize {
		return "", errors.New("not a witness secret key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey := f[2] + "+" + f[3] + "+" + base64.StdEncoding.EncodeToString(append([]byte{raw[0]}, pub...))
	if _, err := checkpoint.NewWitnessVerifier(vkey); err != nil {
		return "", fmt.Errorf("the secret key is damaged: %w", err)
	}
	return vkey, nil
}

func writeFileExcl(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The directory entry too: the key must not vanish while its state stays.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// VKey returns the witness's verifier key (a cosignature/v1 vkey).
func (w *Witness) VKey() string { return w.vkey }

// Created reports whether New created the key (the first start).
func (w *Witness) Created() bool { return w.created }

// Reload reads the log lists again and swaps them in at once. It never
// touches the state: a log dropped from the lists and added back continues
// from the checkpoint cosigned before. On error the lists in force stay.
func (w *Witness) Reload() error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	t, err := w.readLists()
	if err != nil {
		return err
	}
	w.storeLists(t)
	return nil
}

// listsRead is what readLists read: the table and how many keys each list
// gave.
type listsRead struct {
	table            *logTable
	listed, followed int
}

// readLists reads and parses LogsFile and FollowFile.
func (w *Witness) readLists() (listsRead, error) {
	var listed []ListedLog
	var followed []FollowedLog
	if w.cfg.LogsFile != "" {
		b, err := readBounded(w.cfg.LogsFile)
		if err != nil {
			return listsRead{}, err
		}
		if listed, err = ParseLogList(b); err != nil {
			return listsRead{}, fmt.Errorf("%s: %w", w.cfg.LogsFile, err)
		}
	}
	if w.cfg.FollowFile != "" {
		b, err := readBounded(w.cfg.FollowFile)
		if err != nil {
			return listsRead{}, err
		}
		if followed, err = ParseFollow(b); err != nil {
			return listsRead{}, fmt.Errorf("%s: %w", w.cfg.FollowFile, err)
		}
	}
	return listsRead{buildTable(listed, followed), len(listed), len(followed)}, nil
}

func (w *Witness) storeLists(r listsRead) {
	w.logs.Store(r.table)
	w.log.Info("log lists loaded", "logs", len(r.table.byOrigin), "listed_keys", r.listed, "followed_keys", r.followed)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("couldn't read the log list: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxListSize+1))
	if err != nil {
		return nil, fmt.Errorf("couldn't read %s: %w", path, err)
	}
	if len(b) > MaxListSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxListSize)
	}
	return b, nil
}

// Close stops the poller, finishes the writes under way and closes the
// state. Stop the HTTP servers first (http.Server.Shutdown), so that no
// request is between its durable write and its answer.
func (w *Witness) Close() error {
	w.cancel()
	<-w.pollDone
	return w.state.close()
}
