// Package pkcs11key signs with Ed25519 keys held in a PKCS#11 token (an HSM,
// or SoftHSM2 in tests): the private key never leaves the token. A key is
// named by an RFC 7512 PKCS#11 URI, e.g.
//
//	pkcs11:token=tidemark;object=log-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/tidemark/pin
//
// The key is a CKK_EC_EDWARDS key pair on edwards25519 (made by `tidemark
// keygen --pkcs11`, pkcs11-tool --key-type EC:edwards25519, or the HSM's own
// tools); the public key is read from the public key object's CKA_EC_POINT
// and signatures are made with CKM_EDDSA.
//
// The signing code needs cgo (the module is loaded with dlopen); a binary
// built without cgo refuses pkcs11: keys with an error saying so.
package pkcs11key

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// PINEnv is the environment variable read for the PIN when the URI has
// neither pin-value nor pin-source.
const PINEnv = "TIDEMARK_PKCS11_PIN"

// IsURI reports whether s names a PKCS#11 key rather than a key file.
func IsURI(s string) bool { return strings.HasPrefix(s, "pkcs11:") }

// URI is a parsed PKCS#11 URI: the attributes that select a token and a key
// in it, the module to load, and where the PIN comes from.
type URI struct {
	// Token attributes: each, when set, must match the token's.
	Token, Manufacturer, Model, Serial string
	SlotID                             *uint
	// Object is the key's label (CKA_LABEL), ID its CKA_ID; at least one
	// must be set.
	Object string
	ID     []byte
	// Type, if set, is "private" or "public" (RFC 7512's type=): a URI
	// may name either half of the pair, and both are looked up.
	Type string

	ModulePath string
	PINValue   string
	PINSource  string
}

// ParseURI parses an RFC 7512 PKCS#11 URI. It accepts the path attributes
// token, manufacturer, model, serial, slot-id, object, id and type, and the
// query attributes module-path, pin-value and pin-source (a file: URI or an
// absolute path); any other attribute is refused, so that a misspelt one
// cannot silently select another key.
func ParseURI(s string) (*URI, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, errors.New("pkcs11: a PKCS#11 URI starts with pkcs11:")
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	for _, attr := range splitNonEmpty(path, ";") {
		k, v, err := attribute(attr)
		if err != nil {
			return nil, err
		}
		if seen[k] {
			return nil, fmt.Errorf("pkcs11: URI attribute %q appears twice", k)
		}
		seen[k] = true
		switch k {
		case "token":
			u.Token = v
		case "manufacturer":
			u.Manufacturer = v
		case "model":
			u.Model = v
		case "serial":
			u.Serial = v
		case "slot-id":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("pkcs11: URI slot-id %q is not a number", v)
			}
			id := uint(n)
			u.SlotID = &id
		case "object":
			u.Object = v
		case "id":
			u.ID = []byte(v)
		case "type":
			if v != "private" && v != "public" {
				return nil, fmt.Errorf("pkcs11: URI type=%s: an Ed25519 key is type=private (or public, naming the same pair)", v)
			}
			u.Type = v
		case "module-path", "pin-value", "pin-source":
			return nil, fmt.Errorf("pkcs11: URI attribute %q belongs in the query, after '?'", k)
		default:
			return nil, fmt.Errorf("pkcs11: URI path attribute %q is not supported (token, manufacturer, model, serial, slot-id, object, id, type)", k)
		}
	}
	for _, attr := range splitNonEmpty(query, "&") {
		k, v, err := attribute(attr)
		if err != nil {
			return nil, err
		}
		if seen["?"+k] {
			return nil, fmt.Errorf("pkcs11: URI attribute %q appears twice", k)
		}
		seen["?"+k] = true
		switch k {
		case "module-path":
			u.ModulePath = v
		case "pin-value":
			u.PINValue = v
		case "pin-source":
			u.PINSource = v
		default:
			return nil, fmt.Errorf("pkcs11: URI query attribute %q is not supported (module-path, pin-value, pin-source)", k)
		}
	}
	if u.Object == "" && len(u.ID) == 0 {
		return nil, errors.New("pkcs11: the URI names no key: give object=LABEL or id=%XX..")
	}
	if u.ModulePath == "" {
		return nil, errors.New("pkcs11: the URI names no module: add ?module-path=/path/to/the/module.so (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)")
	}
	if u.PINValue != "" && u.PINSource != "" {
		return nil, errors.New("pkcs11: the URI has both pin-value and pin-source: give one")
	}
	return u, nil
}

func splitNonEmpty(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func attribute(attr string) (string, string, error) {
	k, v, ok := strings.Cut(attr, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("pkcs11: URI attribute %q is not name=value", attr)
	}
	dv, err := url.PathUnescape(v)
	if err != nil {
		return "", "", fmt.Errorf("pkcs11: URI attribute %s: %v", k, err)
	}
	return k, dv, nil
}

// PIN returns the user PIN: the URI's pin-value, else the contents of its
// pin-source file (without a trailing newline), else $TIDEMARK_PKCS11_PIN.
func (u *URI) PIN() (string, error) {
	switch {
	case u.PINValue != "":
		return u.PINValue, nil
	case u.PINSource != "":
		path := u.PINSource
		if p, ok := strings.CutPrefix(path, "file:"); ok {
			path = strings.TrimPrefix(p, "//")
		}
		if !strings.HasPrefix(path, "/") {
			return "", fmt.Errorf("pkcs11: pin-source %q: want file:/absolute/path", u.PINSource)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("pkcs11: couldn't read the PIN: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case os.Getenv(PINEnv) != "":
		return os.Getenv(PINEnv), nil
	}
	return "", fmt.Errorf("pkcs11: no PIN: give pin-source=file:/path in the URI, or set %s (pin-value=... works too, but puts the PIN on the command line)", PINEnv)
}

// Redact returns s for a message: a PKCS#11 URI without its pin-value, or
// s itself if it is not a PKCS#11 URI.
func Redact(s string) string {
	if !IsURI(s) {
		return s
	}
	if u, err := ParseURI(s); err == nil {
		return u.String()
	}
	return "pkcs11:(a URI that does not parse)"
}

// String returns the URI with its pin-value redacted, for logs and errors.
func (u *URI) String() string {
	var path []string
	add := func(k, v string) {
		if v != "" {
			path = append(path, k+"="+escape(v))
		}
	}
	add("token", u.Token)
	add("manufacturer", u.Manufacturer)
	add("model", u.Model)
	add("serial", u.Serial)
	if u.SlotID != nil {
		path = append(path, "slot-id="+strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	add("object", u.Object)
	if len(u.ID) > 0 {
		var b strings.Builder
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02x", c)
		}
		path = append(path, "id="+b.String())
	}
	add("type", u.Type)
	s := "pkcs11:" + strings.Join(path, ";") + "?module-path=" + escape(u.ModulePath)
	if u.PINSource != "" {
		s += "&pin-source=" + escape(u.PINSource)
	}
	if u.PINValue != "" {
		s += "&pin-value=REDACTED"
	}
	return s
}

func escape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/:", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
