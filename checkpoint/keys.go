package checkpoint

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Key types, the first byte of a signed-note key.
const (
	// keyTypeEd25519 is a plain signed-note Ed25519 key: a log's key.
	keyTypeEd25519 = 0x01
	// keyTypeCosignatureV1 is a C2SP tlog-cosignature v1 Ed25519 key: a
	// witness's key.
	keyTypeCosignatureV1 = 0x04
)

// GenerateLogKey returns a new Ed25519 signed-note key pair (type 0x01) for
// a log whose origin is origin: the key's name is the origin, which is how
// Open ties a signature to a checkpoint. skey is secret; vkey goes into
// policies.
func GenerateLogKey(origin string) (skey, vkey string, err error) {
	if !validKeyName(origin) {
		return "", "", fmt.Errorf("checkpoint: origin %q cannot name a key: it must be non-empty UTF-8 without spaces, control characters or '+'", origin)
	}
	skey, vkey, err = note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", "", fmt.Errorf("checkpoint: couldn't generate log key: %w", err)
	}
	return skey, vkey, nil
}

// GenerateWitnessKey returns a new tlog-cosignature v1 key pair (type 0x04)
// for a witness called name. The key hash in both keys is computed over the
// 0x04 type byte and the public key, as tlog-cosignature requires:
//
//	vkey = name+hhhhhhhh+base64(0x04 || public key)
//	skey = PRIVATE+KEY+name+hhhhhhhh+base64(0x04 || seed)
func GenerateWitnessKey(name string) (skey, vkey string, err error) {
	if !validKeyName(name) {
		return "", "", fmt.Errorf("checkpoint: %q cannot name a key: it must be non-empty UTF-8 without spaces, control characters or '+'", name)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("checkpoint: couldn't generate witness key: %w", err)
	}
	pubkey := append([]byte{keyTypeCosignatureV1}, pub...)
	seed := append([]byte{keyTypeCosignatureV1}, priv.Seed()...)
	h := keyHash(name, pubkey)
	skey = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, h, base64.StdEncoding.EncodeToString(seed))
	vkey = fmt.Sprintf("%s+%08x+%s", name, h, base64.StdEncoding.EncodeToString(pubkey))
	return skey, vkey, nil
}

// NewLogSigner returns the signer for a log's secret key, which must be an
// Ed25519 signed-note key (type 0x01) in its canonical text form.
func NewLogSigner(skey string) (note.Signer, error) {
	if _, err := parseSecretKey(skey, keyTypeEd25519, "log"); err != nil {
		return nil, err
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: log secret key: %w", err)
	}
	return s, nil
}

// NewLogVerifier returns the verifier for a log's public key, which must be
// an Ed25519 signed-note key (type 0x01) of 32 bytes in its canonical text
// form: a valid name, exactly 8 lowercase hex digits that match the key hash
// of the name and key, and canonical base64.
func NewLogVerifier(vkey string) (note.Verifier, error) {
	k, err := parseVerifierKey(vkey, keyTypeEd25519, "log")
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: log key: %w", err)
	}
	if v.Name() != k.name || v.KeyHash() != k.hash {
		return nil, fmt.Errorf("checkpoint: log key: %w: the library read it differently", ErrMalformed)
	}
	return v, nil
}

// NewWitnessSigner returns the signer for a witness's secret key, which must
// be a tlog-cosignature v1 key (type 0x04). Its signatures are cosignatures:
// an 8-byte timestamp, the current time, then an Ed25519 signature over the
// timestamp and the checkpoint body.
func NewWitnessSigner(skey string) (note.Signer, error) {
	if _, err := parseSecretKey(skey, keyTypeCosignatureV1, "witness"); err != nil {
		return nil, err
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: witness secret key: %w", err)
	}
	return s, nil
}

// NewWitnessVerifier returns the verifier for a witness's public key, which
// must be a tlog-cosignature v1 key (type 0x04) of 32 bytes in its canonical
// text form: a valid name, exactly 8 lowercase hex digits that match the key
// hash of the name, the type byte and the key, and canonical base64.
//
// The library it wraps, formats/note.NewVerifierForCosignatureV1, also
// accepts type 0x01 keys and ML-DSA keys, and never checks the key hash
// written in the key; this function refuses all of that.
func NewWitnessVerifier(vkey string) (note.Verifier, error) {
	k, err := parseVerifierKey(vkey, keyTypeCosignatureV1, "witness")
	if err != nil {
		return nil, err
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: witness key: %w", err)
	}
	if v.Name() != k.name || v.KeyHash() != k.hash {
		return nil, fmt.Errorf("checkpoint: witness key: %w: the library read it differently", ErrMalformed)
	}
	return v, nil
}

// KeyID returns the identity of v's key as it appears in a vkey and in
// signature lines: its name, "+", and its key hash in 8 lowercase hex
// digits. Cosignatures uses it to key its result.
func KeyID(v note.Verifier) string {
	return fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
}

// parsedKey is a key in signed-note text form, checked.
type parsedKey struct {
	name string
	hash uint32
	typ  byte
	key  []byte // without the type byte: a public key or an Ed25519 seed
}

// parseVerifierKey checks a "name+hash+base64" public key strictly, for the
// one type want. role ("log", "witness") goes into error messages.
func parseVerifierKey(vkey string, want byte, role string) (parsedKey, error) {
	if len(vkey) > maxKeySize {
		return parsedKey{}, keyErrorf(role, "key", "is %d bytes, more than %d", len(vkey), maxKeySize)
	}
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return parsedKey{}, keyErrorf(role, "key", "want name+hash+key")
	}
	k, err := checkKeyParts(name, hash16, key64, want, role, "key")
	if err != nil {
		return parsedKey{}, err
	}
	if h := keyHash(k.name, append([]byte{k.typ}, k.key...)); h != k.hash {
		return parsedKey{}, keyErrorf(role, "key", "key hash %08x does not match the key (want %08x)", k.hash, h)
	}
	return k, nil
}

// parseSecretKey checks a "PRIVATE+KEY+name+hash+base64" secret key strictly,
// for the one type want, including that the hash matches the public key
// derived from the seed.
func parseSecretKey(skey string, want byte, role string) (parsedKey, error) {
	if len(skey) > maxKeySize {
		return parsedKey{}, keyErrorf(role, "secret key", "is %d bytes, more than %d", len(skey), maxKeySize)
	}
	rest, ok := strings.CutPrefix(skey, "PRIVATE+KEY+")
	if !ok {
		return parsedKey{}, keyErrorf(role, "secret key", "does not start with PRIVATE+KEY+")
	}
	name, rest, ok1 := strings.Cut(rest, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return parsedKey{}, keyErrorf(role, "secret key", "want PRIVATE+KEY+name+hash+key")
	}
	k, err := checkKeyParts(name, hash16, key64, want, role, "secret key")
	if err != nil {
		return parsedKey{}, err
	}
	pub := ed25519.NewKeyFromSeed(k.key).Public().(ed25519.PublicKey)
	if h := keyHash(k.name, append([]byte{k.typ}, pub...)); h != k.hash {
		return parsedKey{}, keyErrorf(role, "secret key", "key hash %08x does not match the key (want %08x)", k.hash, h)
	}
	return k, nil
}

// maxKeySize bounds a key's text: a 32-byte key is 44 base64 characters, and
// names are short. Keys come from files and policies, not from the network.
const maxKeySize = 1024

func checkKeyParts(name, hash16, key64 string, want byte, role, what string) (parsedKey, error) {
	if !validKeyName(name) {
		return parsedKey{}, keyErrorf(role, what, "name %q is not valid: it must be non-empty UTF-8 without spaces, control characters or '+'", name)
	}
	hash, ok := parseKeyHash(hash16)
	if !ok {
		return parsedKey{}, keyErrorf(role, what, "key hash %q is not 8 lowercase hex digits", hash16)
	}
	key, err := decodeCanonicalBase64([]byte(key64))
	if err != nil {
		return parsedKey{}, keyErrorf(role, what, "%v", err)
	}
	if len(key) != 1+32 {
		return parsedKey{}, keyErrorf(role, what, "key is %d bytes, want 33 (a type byte and 32 bytes)", len(key))
	}
	if key[0] != want {
		return parsedKey{}, keyErrorf(role, what, "key type is 0x%02x, want 0x%02x (%s)", key[0], want, keyTypeName(want))
	}
	return parsedKey{name: name, hash: hash, typ: key[0], key: key[1:]}, nil
}

func keyTypeName(t byte) string {
	switch t {
	case keyTypeEd25519:
		return "Ed25519, a log key"
	case keyTypeCosignatureV1:
		return "cosignature/v1, a witness key"
	}
	return "unknown"
}

func keyErrorf(role, what, format string, args ...any) error {
	return malformedf("%s %s: %s", role, what, fmt.Sprintf(format, args...))
}

// parseKeyHash parses exactly 8 lowercase hex digits. strconv.ParseUint,
// which sumdb/note uses, also takes uppercase, so "ABCD0123" and "abcd0123"
// would be the same key: we accept only the form the generators write.
func parseKeyHash(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var h uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		h = h<<4 | uint32(d)
	}
	return h, true
}

// validKeyName is signed-note's rule for key names (and so for the origins
// of logs whose key is named after them): non-empty UTF-8, no Unicode spaces,
// no '+'. We also refuse control characters, which signed-note allows in a
// name but not in a note, so a key with one could never sign anything.
func validKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) &&
		strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) < 0 &&
		!strings.Contains(name, "+")
}

// keyHash is signed-note's key ID: the first 4 bytes of
// SHA-256(name || "\n" || type byte || public key). key includes the type.
func keyHash(name string, key []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// NewLogSignerFrom returns a log's signer (type 0x01 Ed25519) named origin
// whose signatures are made by s, an Ed25519 key held elsewhere (a PKCS#11
// token): s.Public() must be an ed25519.PublicKey, and s.Sign(rand, msg,
// crypto.Hash(0)) must make a plain Ed25519 signature of msg. vkey is the
// key's verifier key. Every signature is checked against the public key
// before it is returned, so a faulty device cannot publish a bad one.
func NewLogSignerFrom(origin string, s crypto.Signer) (signer note.Signer, vkey string, err error) {
	return newExternalSigner(origin, s, keyTypeEd25519, "log")
}

// NewWitnessSignerFrom is NewLogSignerFrom for a witness called name: a
// tlog-cosignature v1 signer (type 0x04), whose signatures are the current
// time (8 bytes, Unix seconds) followed by s's Ed25519 signature of
// "cosignature/v1\ntime T\n" and the note's text.
func NewWitnessSignerFrom(name string, s crypto.Signer) (signer note.Signer, vkey string, err error) {
	return newExternalSigner(name, s, keyTypeCosignatureV1, "witness")
}

func newExternalSigner(name string, s crypto.Signer, typ byte, role string) (note.Signer, string, error) {
	if !validKeyName(name) {
		return nil, "", fmt.Errorf("checkpoint: %q cannot name a %s key: it must be non-empty UTF-8 without spaces, control characters or '+'", name, role)
	}
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, "", fmt.Errorf("checkpoint: the %s key is not an Ed25519 key (%T)", role, s.Public())
	}
	pubkey := append([]byte{typ}, pub...)
	h := keyHash(name, pubkey)
	vkey := fmt.Sprintf("%s+%08x+%s", name, h, base64.StdEncoding.EncodeToString(pubkey))
	es := &externalSigner{name: name, hash: h, pub: pub, s: s, cosig: typ == keyTypeCosignatureV1, now: time.Now}
	return es, vkey, nil
}

// externalSigner is a note.Signer whose Ed25519 signatures come from a
// crypto.Signer.
type externalSigner struct {
	name  string
	hash  uint32
	pub   ed25519.PublicKey
	s     crypto.Signer
	cosig bool
	now   func() time.Time
}

func (e *externalSigner) Name() string    { return e.name }
func (e *externalSigner) KeyHash() uint32 { return e.hash }

func (e *externalSigner) Sign(msg []byte) ([]byte, error) {
	m := msg
	var t uint64
	if e.cosig {
		// As formats/note's cosignature/v1 signer: a note of fewer than
		// three lines is no checkpoint.
		if bytes.Count(msg, []byte("\n")) < 2 {
			return nil, errors.New("checkpoint: cosigned note format invalid")
		}
		t = uint64(e.now().Unix())
		m = []byte(fmt.Sprintf("cosignature/v1\ntime %d\n%s", t, msg))
	}
	sig, err := e.s.Sign(rand.Reader, m, crypto.Hash(0))
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(e.pub, m, sig) {
		return nil, fmt.Errorf("checkpoint: the key %s+%08x made a signature that its public key does not verify", e.name, e.hash)
	}
	if e.cosig {
		return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(sig)), t), sig...), nil
	}
	return sig, nil
}
