package witness

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"sync"

	"filippo.io/edwards25519"
)

// The log's signature is checked on every add-checkpoint request, and it is
// most of the witness's CPU: an Ed25519 verification. crypto/ed25519 takes
// the public key as bytes and decompresses it (a square root) on every
// call; the witness verifies with each log's key again and again, so it
// keeps the decompressed point with the key and does the rest exactly as
// crypto/ed25519 does (RFC 8032 with the cofactorless equation, S < L, the
// recomputed R compared byte for byte). The differential test in
// verify_test.go holds it to crypto/ed25519 on valid, corrupted and
// malleated signatures.
//
// This is only the fast path to yes. A request it does not accept goes
// through checkpoint.Open and note.Open as before, which decide, and word
// the error: so what the witness accepts, and every error it answers, are
// those of the libraries.

// A logKey is one Ed25519 key of a log (a vkey of the lists), with its point
// decompressed the first time it is used.
type logKey struct {
	pub []byte // the 32-byte Ed25519 public key

	once sync.Once
	negA *edwards25519.Point // -A; nil if the key is not a point (it verifies nothing)
}

// newLogKey reads a log vkey that checkpoint.NewLogVerifier has accepted
// (name+hhhhhhhh+base64(0x01 || key)). It returns nil for anything else, and
// a signature by a nil key goes the slow path.
func newLogKey(vkey string) *logKey {
	f := strings.SplitN(vkey, "+", 3) // the base64 may hold '+'; the name may not
	if len(f) != 3 {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x01 {
		return nil
	}
	return &logKey{pub: raw[1:]}
}

func (k *logKey) point() *edwards25519.Point {
	k.once.Do(func() {
		// As crypto/ed25519.Verify: a key SetBytes refuses verifies nothing.
		if A, err := new(edwards25519.Point).SetBytes(k.pub); err == nil {
			k.negA = new(edwards25519.Point).Negate(A)
		}
	})
	return k.negA
}

// verify is crypto/ed25519.Verify(k.pub, msg, sig) with the key's point
// decompressed once.
func (k *logKey) verify(msg, sig []byte) bool {
	if len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	negA := k.point()
	if negA == nil {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(k.pub)
	h.Write(msg)
	var digest [sha512.Size]byte
	kh, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		return false
	}
	S, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	R := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(kh, negA, S)
	return subtle.ConstantTimeCompare(sig[:32], R.Bytes()) == 1
}

// fastVerify is the fast path of verifyLogSignature for a signed checkpoint
// that parseSigned accepted (so its signature lines are well formed, in
// canonical base64, at least 5 bytes, with no key twice). It returns the
// signature lines by the log's keys, and true, when there is at least one
// and each of them is valid: exactly when note.Open (and checkpoint.Open, as
// every key of the log then names the origin or none must) would accept it
// and give those lines. Anything else, including a line two of the log's
// keys could have made, is false, for the slow path to decide and explain.
func fastVerify(signed, text []byte, kl *knownLog) ([]byte, bool) {
	sigs := signed[len(text)+1:]
	var lines []byte
	var buf [128]byte
	for len(sigs) > 0 {
		i := bytes.IndexByte(sigs, '\n')
		line := sigs[:i+1]
		sigs = sigs[i+1:]
		rest := line[len("— ") : len(line)-1]
		sp := bytes.IndexByte(rest, ' ')
		if sp < 0 {
			return nil, false
		}
		name, b64 := rest[:sp], rest[sp+1:]
		sig := buf[:]
		if n := base64.StdEncoding.DecodedLen(len(b64)); n > len(sig) {
			sig = make([]byte, n)
		}
		n, err := base64.StdEncoding.Decode(sig, b64)
		if err != nil || n < 5 {
			return nil, false
		}
		sig = sig[:n]
		hash := binary.BigEndian.Uint32(sig)
		// note.VerifierList: the one verifier of this name and key hash;
		// none, the line is ignored; several, an error.
		match := -1
		for j, v := range kl.verifiers {
			if v.KeyHash() == hash && v.Name() == string(name) {
				if match >= 0 {
					return nil, false
				}
				match = j
			}
		}
		if match < 0 {
			continue
		}
		k := kl.keys[match]
		if k == nil || !k.verify(text, sig[4:]) {
			return nil, false
		}
		lines = append(lines, line...)
	}
	return lines, lines != nil
}
