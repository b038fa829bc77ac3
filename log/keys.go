package log

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/pkcs11key"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// KeyFile is where a log keeps the key it created for itself.
const KeyFile = "log.key"

// Keys are a log's signing keys and their verifier keys, in the same order.
type Keys struct {
	Signers []note.Signer
	VKeys   []string

	// fresh is the key OpenKeys made for a first start, not yet on disk:
	// New writes it (Create) once every other check has passed.
	fresh *freshKey
}

type freshKey struct{ dir, skey, vkey string }

// DefaultOrigin is the origin of a key created when none is given: the host
// name followed by "/tidemark".
func DefaultOrigin() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "localhost"
	}
	return h + "/tidemark"
}

// OpenKeys reads a log's signer keys from files (each holds one note signer
// key, as `tidemark keygen` writes them), or with no files from
// DIR/log.key. A "file" that starts with pkcs11: is an RFC 7512 URI
// naming an Ed25519 key in a PKCS#11 token (package pkcs11key), which
// needs a non-empty origin: the token holds no name. It writes nothing.
// When there are no files and no DIR/log.key, it makes a new key for origin (DefaultOrigin if "") in
// memory: IsNew reports it, and New writes it to DIR/log.key (mode 0600)
// and DIR/log.pub once every other check has passed, so that a start that
// fails leaves no key behind. When the keys exist, a non-empty origin must be
// theirs: an origin that contradicts the key is refused, not ignored.
func OpenKeys(dir string, files []string, origin string) (Keys, error) {
	var keys Keys
	if len(files) == 0 {
		path := filepath.Join(dir, KeyFile)
		_, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if origin == "" {
				origin = DefaultOrigin()
			}
			skey, vkey, err := checkpoint.GenerateLogKey(origin)
			if err != nil {
				return Keys{}, err
			}
			s, err := checkpoint.NewLogSigner(skey)
			if err != nil {
				return Keys{}, err
			}
			return Keys{Signers: []note.Signer{s}, VKeys: []string{vkey}, fresh: &freshKey{dir: dir, skey: skey, vkey: vkey}}, nil
		case err != nil:
			return Keys{}, fmt.Errorf("couldn't look for the log key: %w", err)
		}
		files = []string{path}
	}
	for _, f := range files {
		if pkcs11key.IsURI(f) {
			s, vkey, err := openPKCS11Key(f, origin)
			if err != nil {
				return Keys{}, err
			}
			keys.Signers = append(keys.Signers, s)
			keys.VKeys = append(keys.VKeys, vkey)
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return Keys{}, fmt.Errorf("couldn't read key: %w", err)
		}
		s, err := checkpoint.NewLogSigner(strings.TrimSpace(string(b)))
		if err != nil {
			return Keys{}, fmt.Errorf("key %s: %w", f, err)
		}
		vkey, err := VerifierKey(string(b))
		if err != nil {
			return Keys{}, fmt.Errorf("key %s: %w", f, err)
		}
		if len(keys.Signers) > 0 && s.Name() != keys.Signers[0].Name() {
			return Keys{}, fmt.Errorf("key %s is for origin %q but %s is for %q: all keys of a log share its origin", f, s.Name(), pkcs11key.Redact(files[0]), keys.Signers[0].Name())
		}
		keys.Signers = append(keys.Signers, s)
		keys.VKeys = append(keys.VKeys, vkey)
	}
	if origin != "" && origin != keys.Signers[0].Name() {
		return Keys{}, fmt.Errorf("origin %q was given, but the key %s is for origin %q: a log's origin is its key's, fixed when the key was made. "+
			"Give the key's origin or none; a log with another origin needs its own key and data directory", origin, files[0], keys.Signers[0].Name())
	}
	return keys, nil
}

// openPKCS11Key opens a log key held in a PKCS#11 token. A token key has
// no name of its own: the log's origin names it (it is part of the vkey and
// of every signature line), so --origin is required with one, and must be
// the same at every start.
func openPKCS11Key(uri, origin string) (note.Signer, string, error) {
	if origin == "" {
		return nil, "", errors.New("a pkcs11: key needs --origin: the origin names the key, and with the public key makes the verifier key")
	}
	k, err := pkcs11key.Open(uri)
	if err != nil {
		return nil, "", err
	}
	s, vkey, err := checkpoint.NewLogSignerFrom(origin, k)
	if err != nil {
		k.Close()
		return nil, "", err
	}
	return s, vkey, nil
}

// IsNew reports whether OpenKeys made the key for a first start; it is on
// disk once Create (or New) has written it.
func (k Keys) IsNew() bool { return k.fresh != nil }

// Create writes a key that OpenKeys made (IsNew) to its data directory,
// creating the directory: DIR/log.key (mode 0600, synced) and DIR/log.pub.
// It does nothing for keys read from files, or when DIR/log.key already
// holds this key.
func (k Keys) Create() error {
	f := k.fresh
	if f == nil {
		return nil
	}
	path := filepath.Join(f.dir, KeyFile)
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == f.skey {
		return nil
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return fmt.Errorf("couldn't create the data directory: %w", err)
	}
	if err := writeFileExcl(path, []byte(f.skey+"\n"), 0o600); err != nil {
		return fmt.Errorf("couldn't write the new key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "log.pub"), []byte(f.vkey+"\n"), 0o644); err != nil {
		return fmt.Errorf("couldn't write the verifier key: %w", err)
	}
	return nil
}

// LoadKeys is OpenKeys followed by Create: it reads the keys, or creates
// DIR/log.key (with origin) on the first start; created reports whether it
// did.
func LoadKeys(dir string, files []string, origin string) (keys Keys, created bool, err error) {
	if keys, err = OpenKeys(dir, files, origin); err != nil {
		return Keys{}, false, err
	}
	if keys.IsNew() {
		if err := keys.Create(); err != nil {
			return Keys{}, false, err
		}
		keys.fresh, created = nil, true
	}
	return keys, created, nil
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
	return f.Close()
}

// VerifierKey returns the verifier key (vkey) of an Ed25519 note signer
// key (skey): same name and key hash, the public half of the key.
func VerifierKey(skey string) (string, error) {
	f := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(f) != 5 || f[0] != "PRIVATE" || f[1] != "KEY" {
		return "", errors.New("not a note signer key (PRIVATE+KEY+name+hash+key)")
	}
	raw, err := base64.StdEncoding.DecodeString(f[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey := f[2] + "+" + f[3] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, pub...))
	if _, err := checkpoint.NewLogVerifier(vkey); err != nil {
		return "", fmt.Errorf("the signer key is damaged: %w", err)
	}
	return vkey, nil
}

// CheckExistingCheckpoint refuses to start a log whose keys do not verify
// the checkpoint already in dir: starting would fork the log's history
// under a new key, or serve another log's tiles under this one's name.
func CheckExistingCheckpoint(dir string, vkeys []string) error {
	b, err := os.ReadFile(filepath.Join(dir, layout.CheckpointPath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("couldn't read the existing checkpoint: %w", err)
	}
	if err := checkCheckpointKeys(b, vkeys); err != nil {
		return fmt.Errorf("none of the keys given verifies the checkpoint already in %s (%w): is this the right key for this data directory?", dir, err)
	}
	return nil
}

// checkCheckpointKeys says whether one of vkeys verifies checkpoint b.
func checkCheckpointKeys(b []byte, vkeys []string) error {
	var verifiers []note.Verifier
	for _, k := range vkeys {
		v, err := checkpoint.NewLogVerifier(k)
		if err != nil {
			return err
		}
		verifiers = append(verifiers, v)
	}
	_, _, err := checkpoint.Open(b, verifiers...)
	return err
}
