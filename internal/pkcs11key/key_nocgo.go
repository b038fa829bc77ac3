//go:build !cgo

package pkcs11key

import (
	"crypto"
	"errors"
	"io"
)

// Supported reports whether this binary can use PKCS#11 keys: it was built
// without cgo, so it cannot load a PKCS#11 module.
const Supported = false

var errNoCgo = errors.New("pkcs11: this tidemark was built without cgo (CGO_ENABLED=0) and cannot load a PKCS#11 module: build it with cgo")

// Key is a PKCS#11 key; without cgo there are none.
type Key struct{}

// Open fails: PKCS#11 needs cgo.
func Open(uriText string) (*Key, error) {
	if _, err := ParseURI(uriText); err != nil {
		return nil, err
	}
	return nil, errNoCgo
}

// Generate fails: PKCS#11 needs cgo.
func Generate(uriText string) (*Key, error) { return Open(uriText) }

func (k *Key) Public() crypto.PublicKey { return nil }

func (k *Key) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return nil, errNoCgo }

func (k *Key) Close() error { return nil }
