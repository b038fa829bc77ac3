//go:build cgo

package pkcs11key

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/miekg/pkcs11"
)

// PKCS#11 3.0 names that github.com/miekg/pkcs11 v1.1.2 does not define.
const (
	ckkECEdwards             = 0x00000040 // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen   = 0x00001055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA                 = 0x00001057 // CKM_EDDSA
	ckrCryptokiAlreadyInited = 0x00000191 // CKR_CRYPTOKI_ALREADY_INITIALIZED
)

// oidEd25519 is id-Ed25519 (1.3.101.112), the CKA_EC_PARAMS of an Ed25519 key.
var oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}

// Supported reports whether this binary can use PKCS#11 keys (it was built
// with cgo).
const Supported = true

// modules are the loaded PKCS#11 modules by path: a module is initialized
// once per process, and its keys (two during a rotation) share it.
var (
	modulesMu sync.Mutex
	modules   = map[string]*pkcs11.Ctx{}
)

func loadModule(path string) (*pkcs11.Ctx, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if c := modules[path]; c != nil {
		return c, nil
	}
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("pkcs11: couldn't load the module %s (is the path right, and the library installed?)", path)
	}
	if err := c.Initialize(); err != nil && !isRV(err, ckrCryptokiAlreadyInited) {
		c.Destroy()
		return nil, fmt.Errorf("pkcs11: module %s: initialize: %w (is the module's configuration readable? SoftHSM2 reads SOFTHSM2_CONF, default /etc/softhsm/softhsm2.conf)", path, err)
	}
	modules[path] = c
	return c, nil
}

func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

// Key is an Ed25519 private key in a PKCS#11 token: a crypto.Signer whose
// Sign makes pure Ed25519 signatures (CKM_EDDSA) in the token. It keeps one
// logged-in session, used under a mutex (a log signs about once a second, a
// witness once a request), and opens it again if the token drops it.
type Key struct {
	uri  *URI
	ctx  *pkcs11.Ctx
	slot uint
	pin  string
	pub  ed25519.PublicKey

	mu      sync.Mutex
	session pkcs11.SessionHandle
	open    bool
	priv    pkcs11.ObjectHandle
}

// Open loads the URI's module, finds its token, logs in with its PIN, and
// finds the Ed25519 key pair it names: the private key, and the public key
// (CKA_EC_POINT) with the same label and ID. It signs one test message to
// check that the two halves belong together.
func Open(uriText string) (*Key, error) {
	u, err := ParseURI(uriText)
	if err != nil {
		return nil, err
	}
	ctx, slot, pin, err := openToken(u)
	if err != nil {
		return nil, err
	}
	k := &Key{uri: u, ctx: ctx, slot: slot, pin: pin}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.openLocked(); err != nil {
		return nil, err
	}
	pubH, err := k.find(pkcs11.CKO_PUBLIC_KEY)
	if err != nil {
		k.closeLocked()
		return nil, err
	}
	if k.pub, err = readPublicKey(ctx, k.session, pubH); err != nil {
		k.closeLocked()
		return nil, fmt.Errorf("pkcs11: %s: %w", u, err)
	}
	msg := []byte("tidemark pkcs11 key check")
	sig, err := k.signLocked(msg)
	if err == nil && !ed25519.Verify(k.pub, msg, sig) {
		err = errors.New("the private key's signature does not verify with the public key found with it: two objects share the label or ID?")
	}
	if err != nil {
		k.closeLocked()
		return nil, fmt.Errorf("pkcs11: %s: %w", u, err)
	}
	return k, nil
}

// findSlot returns the one slot whose token matches u.
// openToken reads the URI's PIN, loads its module and finds its token:
// what opening a key and generating one share.
func openToken(u *URI) (*pkcs11.Ctx, uint, string, error) {
	pin, err := u.PIN()
	if err != nil {
		return nil, 0, "", err
	}
	ctx, err := loadModule(u.ModulePath)
	if err != nil {
		return nil, 0, "", err
	}
	slot, err := findSlot(ctx, u)
	if err != nil {
		return nil, 0, "", err
	}
	return ctx, slot, pin, nil
}

func findSlot(ctx *pkcs11.Ctx, u *URI) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("pkcs11: list slots: %w", err)
	}
	var found []uint
	var labels []string
	for _, s := range slots {
		if u.SlotID != nil && *u.SlotID != s {
			continue
		}
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		labels = append(labels, fmt.Sprintf("%q", ti.Label))
		if (u.Token == "" || u.Token == ti.Label) && (u.Manufacturer == "" || u.Manufacturer == ti.ManufacturerID) &&
			(u.Model == "" || u.Model == ti.Model) && (u.Serial == "" || u.Serial == ti.SerialNumber) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("pkcs11: no token matches %s (tokens present: %v)", u, labels)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("pkcs11: %d tokens match %s: add serial= or slot-id= to the URI", len(found), u)
}

// openLocked opens a session and logs in. A PIN the token refuses is
// reported as such: with most HSMs a few wrong tries lock the token.
func (k *Key) openLocked() error {
	s, err := k.ctx.OpenSession(k.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return fmt.Errorf("pkcs11: %s: open session: %w", k.uri, err)
	}
	if err := k.ctx.Login(s, pkcs11.CKU_USER, k.pin); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		k.ctx.CloseSession(s)
		switch {
		case isRV(err, pkcs11.CKR_PIN_INCORRECT):
			return fmt.Errorf("pkcs11: %s: the token refused the PIN (CKR_PIN_INCORRECT): check pin-source or %s; repeated tries may lock the token", k.uri, PINEnv)
		case isRV(err, pkcs11.CKR_PIN_LOCKED):
			return fmt.Errorf("pkcs11: %s: the token's user PIN is locked (CKR_PIN_LOCKED): its security officer must reset it", k.uri)
		}
		return fmt.Errorf("pkcs11: %s: log in: %w", k.uri, err)
	}
	k.session, k.open = s, true
	priv, err := k.find(pkcs11.CKO_PRIVATE_KEY)
	if err != nil {
		k.closeLocked()
		return err
	}
	k.priv = priv
	return nil
}

func (k *Key) closeLocked() {
	if k.open {
		k.ctx.CloseSession(k.session)
		k.open = false
	}
}

// find returns the one object of class class (a private or public key of
// type CKK_EC_EDWARDS) with the URI's label and ID.
func (k *Key) find(class uint) (pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
	}
	if k.uri.Object != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.uri.Object))
	}
	if len(k.uri.ID) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, k.uri.ID))
	}
	what := "private"
	if class == pkcs11.CKO_PUBLIC_KEY {
		what = "public"
	}
	if err := k.ctx.FindObjectsInit(k.session, tmpl); err != nil {
		return 0, fmt.Errorf("pkcs11: %s: find the %s key: %w", k.uri, what, err)
	}
	objs, _, err := k.ctx.FindObjects(k.session, 2)
	if ferr := k.ctx.FindObjectsFinal(k.session); err == nil {
		err = ferr
	}
	if err != nil {
		return 0, fmt.Errorf("pkcs11: %s: find the %s key: %w", k.uri, what, err)
	}
	switch len(objs) {
	case 0:
		return 0, fmt.Errorf("pkcs11: %s: no Ed25519 (CKK_EC_EDWARDS) %s key with this label and ID in the token", k.uri, what)
	case 1:
		return objs[0], nil
	}
	return 0, fmt.Errorf("pkcs11: %s: more than one Ed25519 %s key with this label and ID: add id= to the URI", k.uri, what)
}

// readPublicKey reads CKA_EC_POINT: a DER OCTET STRING holding the 32-byte
// key (PKCS#11 3.0), or, from some tokens, the 32 bytes bare.
func readPublicKey(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, o pkcs11.ObjectHandle) (ed25519.PublicKey, error) {
	attrs, err := ctx.GetAttributeValue(s, o, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("read the public key: %w", err)
	}
	var point, params []byte
	for _, a := range attrs {
		switch a.Type {
		case pkcs11.CKA_EC_POINT:
			point = a.Value
		case pkcs11.CKA_EC_PARAMS:
			params = a.Value
		}
	}
	if !isEd25519Params(params) {
		return nil, fmt.Errorf("the key is not on edwards25519 (CKA_EC_PARAMS %x): Ed448 and other curves cannot sign notes", params)
	}
	if len(point) == ed25519.PublicKeySize {
		return ed25519.PublicKey(point), nil
	}
	var raw []byte
	if rest, err := asn1.Unmarshal(point, &raw); err != nil || len(rest) != 0 || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("CKA_EC_POINT (%d bytes) is not a DER OCTET STRING of a 32-byte Ed25519 key", len(point))
	}
	return ed25519.PublicKey(raw), nil
}

// isEd25519Params reports whether CKA_EC_PARAMS names edwards25519: the
// OID 1.3.101.112, or the PrintableString "edwards25519" that PKCS#11 3.0
// also allows.
func isEd25519Params(p []byte) bool {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(p, &oid); err == nil && len(rest) == 0 {
		return oid.Equal(oidEd25519)
	}
	var name string
	if rest, err := asn1.UnmarshalWithParams(p, &name, "printable"); err == nil && len(rest) == 0 {
		return name == "edwards25519"
	}
	return false
}

// Public returns the key's ed25519.PublicKey.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign signs msg with pure Ed25519 (CKM_EDDSA, no parameters) in the token.
// opts must be crypto.Hash(0): Ed25519ph and Ed25519ctx are not offered.
func (k *Key) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, errors.New("pkcs11: only pure Ed25519 (crypto.Hash(0)) is supported")
	}
	if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
		return nil, errors.New("pkcs11: Ed25519ctx is not supported")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	sig, err := k.signLocked(msg)
	if err != nil && sessionLost(err) {
		// The token closed our session (restarted, reconnected, logged
		// out): open a new one and try once more.
		k.closeLocked()
		if oerr := k.openLocked(); oerr != nil {
			return nil, fmt.Errorf("pkcs11: %s: sign: %v; then reopening the session: %w", k.uri, err, oerr)
		}
		sig, err = k.signLocked(msg)
	}
	if err != nil {
		return nil, fmt.Errorf("pkcs11: %s: sign: %w", k.uri, err)
	}
	return sig, nil
}

func (k *Key) signLocked(msg []byte) ([]byte, error) {
	if !k.open {
		if err := k.openLocked(); err != nil {
			return nil, err
		}
	}
	if err := k.ctx.SignInit(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, k.priv); err != nil {
		return nil, err
	}
	sig, err := k.ctx.Sign(k.session, msg)
	if err != nil {
		return nil, err
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("the token returned a %d-byte signature, want %d", len(sig), ed25519.SignatureSize)
	}
	return sig, nil
}

func sessionLost(err error) bool {
	return isRV(err, pkcs11.CKR_SESSION_HANDLE_INVALID) || isRV(err, pkcs11.CKR_SESSION_CLOSED) ||
		isRV(err, pkcs11.CKR_USER_NOT_LOGGED_IN) || isRV(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) ||
		isRV(err, pkcs11.CKR_KEY_HANDLE_INVALID) || isRV(err, pkcs11.CKR_DEVICE_REMOVED) || isRV(err, pkcs11.CKR_TOKEN_NOT_PRESENT)
}

// Close closes the key's session. The module stays loaded for the process.
func (k *Key) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closeLocked()
	return nil
}

// Generate makes a new Ed25519 key pair in the token that uriText names,
// labelled with its object= and with CKA_ID its id= (16 random bytes if it
// has none): the private key is sensitive and not extractable. It refuses
// to make a second key with the same label and ID. It returns the key,
// opened.
func Generate(uriText string) (*Key, error) {
	u, err := ParseURI(uriText)
	if err != nil {
		return nil, err
	}
	if u.Object == "" {
		return nil, errors.New("pkcs11: a key to generate needs a label: object=LABEL")
	}
	ctx, slot, pin, err := openToken(u)
	if err != nil {
		return nil, err
	}
	k := &Key{uri: u, ctx: ctx, slot: slot, pin: pin}
	s, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: %s: open session: %w", u, err)
	}
	defer ctx.CloseSession(s)
	if err := ctx.Login(s, pkcs11.CKU_USER, pin); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		if isRV(err, pkcs11.CKR_PIN_INCORRECT) {
			return nil, fmt.Errorf("pkcs11: %s: the token refused the PIN (CKR_PIN_INCORRECT)", u)
		}
		return nil, fmt.Errorf("pkcs11: %s: log in: %w", u, err)
	}
	k.session, k.open = s, true
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		if _, err := k.find(class); err == nil {
			return nil, fmt.Errorf("pkcs11: %s: the token already has an Ed25519 key with this label and ID: a new key needs a new label", u)
		}
	}
	k.open = false
	id := u.ID
	if len(id) == 0 {
		id = make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
	}
	params, _ := asn1.Marshal(oidEd25519)
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	if _, _, err := ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pubT, privT); err != nil {
		return nil, fmt.Errorf("pkcs11: %s: generate an Ed25519 key pair (CKM_EC_EDWARDS_KEY_PAIR_GEN): %w", u, err)
	}
	return Open(uriText)
}
