package log

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
)

// Tokens maps bearer tokens to the source names that are stamped into the
// leaves written with them. Only the SHA-256 of each token is held, and a
// presented token is compared against every entry in constant time.
//
// A tokens file has one token per line:
//
//	# name   sha256 of the token, hex
//	deploy-bot sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// Names are what leaves record as "source": letters, digits and "-_.@/:".
type Tokens struct {
	path string

	mu      sync.RWMutex // guards entries
	entries []tokenEntry
}

type tokenEntry struct {
	name string
	hash [sha256.Size]byte
}

// LoadTokens reads a tokens file. Reload re-reads it (on SIGHUP).
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload re-reads the file; on error the previous tokens stay in force.
func (t *Tokens) Reload() error {
	b, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("couldn't read tokens file: %w", err)
	}
	entries, err := ParseTokens(b)
	if err != nil {
		return fmt.Errorf("tokens file %s: %w", t.path, err)
	}
	t.mu.Lock()
	t.entries = entries
	t.mu.Unlock()
	return nil
}

// ParseTokens parses the contents of a tokens file.
func ParseTokens(b []byte) ([]tokenEntry, error) {
	var entries []tokenEntry
	names := map[string]bool{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasPrefix(f[1], "sha256:") {
			return nil, fmt.Errorf("line %d: want \"NAME sha256:HEX\" (make one with `tidemark token NAME`)", n)
		}
		if !validSourceName(f[0]) {
			return nil, fmt.Errorf("line %d: name %q: use letters, digits and -_.@/: only", n, f[0])
		}
		if names[f[0]] {
			return nil, fmt.Errorf("line %d: name %q listed twice", n, f[0])
		}
		names[f[0]] = true
		h, err := hex.DecodeString(strings.TrimPrefix(f[1], "sha256:"))
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("line %d: the hash must be 64 hex digits", n)
		}
		e := tokenEntry{name: f[0]}
		copy(e.hash[:], h)
		entries = append(entries, e)
	}
	return entries, s.Err()
}

func validSourceName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.ContainsRune("-_.@/:", c):
		default:
			return false
		}
	}
	return true
}

// TokenLine returns the tokens-file line for a token.
func TokenLine(name, token string) string {
	h := sha256.Sum256([]byte(token))
	return name + " sha256:" + hex.EncodeToString(h[:])
}

// Has reports whether a token of the file is named name.
func (t *Tokens) Has(name string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, e := range t.entries {
		if e.name == name {
			return true
		}
	}
	return false
}

// Lookup returns the name of the token, comparing its hash with every
// entry in constant time.
func (t *Tokens) Lookup(token string) (string, bool) {
	h := sha256.Sum256([]byte(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	name, found := "", 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			name, found = e.name, 1
		}
	}
	return name, found == 1
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// authenticate returns the source name of a write. With
// Config.ClientCertWriters, a verified TLS client certificate names it (see
// certSource) and wins over any bearer token sent with it. Otherwise the
// bearer token's name, or OpenSource when writes are open (no tokens and no
// client certificates).
func (s *Server) authenticate(r *http.Request) (string, error) {
	clientCerts := s.cfg.ClientCertWriters
	if clientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		name, err := certSource(r.TLS.VerifiedChains[0][0])
		// Token names and certificate names are one namespace of sources
		// (the leaf records only the name, and idempotency keys are per
		// source): a certificate must not speak for a token's writer.
		if err == nil && s.tokens != nil && s.tokens.Has(name) {
			return "", errorf(http.StatusForbidden, "forbidden", "the client certificate's common name %q is also the name of a token in --tokens: a source has one identity; rename the token or issue the certificate another name", name)
		}
		return name, err
	}
	if s.tokens == nil {
		if clientCerts {
			return "", errorf(http.StatusUnauthorized, "unauthenticated", "this log needs a TLS client certificate to write: connect over HTTPS with a certificate issued by a CA the log trusts for writers (the certificate's subject common name names the source)")
		}
		return OpenSource, nil
	}
	tok, ok := bearer(r)
	if !ok {
		if clientCerts {
			return "", errorf(http.StatusUnauthorized, "unauthenticated", "this log needs a TLS client certificate or a bearer token to write: present a certificate issued by a CA the log trusts for writers, or send \"Authorization: Bearer <token>\"")
		}
		return "", errorf(http.StatusUnauthorized, "unauthenticated", "this log needs a bearer token: send \"Authorization: Bearer <token>\"")
	}
	name, ok := s.tokens.Lookup(tok)
	if !ok {
		return "", errorf(http.StatusForbidden, "forbidden", "the bearer token is not one this log knows")
	}
	return name, nil
}

// oidCommonName is the X.509 attribute type of a subject's common name.
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// certSource returns the source named by a verified client certificate: its
// subject's common name, which must be a valid source name (as a token's
// name is) and the only common name of the subject, so that what the leaf
// records is exactly what the CA certified.
func certSource(cert *x509.Certificate) (string, error) {
	n := 0
	for _, a := range cert.Subject.Names {
		if a.Type.Equal(oidCommonName) {
			n++
		}
	}
	if n != 1 {
		return "", errorf(http.StatusForbidden, "forbidden", "the client certificate's subject has %d common names; it needs exactly one, naming the writer (e.g. CN=kube-apiserver)", n)
	}
	cn := cert.Subject.CommonName
	if !validSourceName(cn) {
		return "", errorf(http.StatusForbidden, "forbidden", "the client certificate's subject common name %q cannot be a source: use 1 to 128 letters, digits and -_.@/: only (issue the writer a certificate whose CN names it, e.g. CN=kube-apiserver)", cn)
	}
	return cn, nil
}

// OpenSource is the source stamped into leaves when writes are open.
const OpenSource = "anonymous"
