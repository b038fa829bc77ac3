package checkpoint

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// The vectors in testdata were made by other implementations than ours:
// cosignatures by filippo.io/torchwood, Merkle proofs by
// golang.org/x/mod/sumdb/tlog (testdata/README.md says which made what, and
// how to regenerate them). These tests check our code against them: our
// verifiers accept every valid vector and refuse every invalid one, and our
// signers, given the same keys and times, write the same bytes.

type vecKey struct {
	Name     string `json:"name"`
	Seed     string `json:"seed"`
	SKey     string `json:"skey"`
	VKey     string `json:"vkey"`
	InPolicy bool   `json:"in_policy"`
}

type vecCosig struct {
	Witness string `json:"witness"`
	Time    int64  `json:"time"`
	Line    string `json:"line"`
}

type vecSigned struct {
	Name         string     `json:"name"`
	Description  string     `json:"description"`
	Body         string     `json:"body"`
	LogSignature string     `json:"log_signature"`
	Cosignatures []vecCosig `json:"cosignatures"`
	Signed       string     `json:"signed"`
}

type vecInvalid struct {
	Name             string `json:"name"`
	Description      string `json:"description"`
	Signed           string `json:"signed"`
	Check            string `json:"check"`
	Error            string `json:"error"`
	TorchwoodAccepts bool   `json:"torchwood_accepts"`
}

type vecInvalidKey struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Role        string `json:"role"`
	Kind        string `json:"kind"`
	Key         string `json:"key"`
}

type vecCosignatures struct {
	Comment     []string        `json:"comment"`
	Log         vecKey          `json:"log"`
	Witnesses   []vecKey        `json:"witnesses"`
	Valid       []vecSigned     `json:"valid"`
	Invalid     []vecInvalid    `json:"invalid"`
	InvalidKeys []vecInvalidKey `json:"invalid_keys"`
}

type vecProof struct {
	Size     uint64   `json:"size"`
	Index    uint64   `json:"index"`
	Leaf     []byte   `json:"leaf"`
	LeafHash []byte   `json:"leaf_hash"`
	Root     []byte   `json:"root"`
	Hashes   [][]byte `json:"hashes"`
	Extra    []byte   `json:"extra"`
	Text     string   `json:"text"`
}

type vecProofs struct {
	Comment   []string   `json:"comment"`
	Log       vecKey     `json:"log"`
	Witnesses []vecKey   `json:"witnesses"`
	Entries   [][]byte   `json:"entries"`
	Proofs    []vecProof `json:"proofs"`
}

type vecConsistency struct {
	Comment []string `json:"comment"`
	Proofs  []struct {
		OldSize uint64   `json:"old_size"`
		NewSize uint64   `json:"new_size"`
		OldRoot []byte   `json:"old_root"`
		NewRoot []byte   `json:"new_root"`
		Hashes  [][]byte `json:"hashes"`
	} `json:"proofs"`
}

func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// vecPolicy is the vectors' policy: the log's key, and every witness marked
// in_policy, all of which must cosign. Witness i is called w<i+1>.
func vecPolicy(t *testing.T, log vecKey, witnesses []vecKey) (p *Policy, policyName map[string]string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "log %s\n", log.VKey)
	policyName = make(map[string]string)
	var members []string
	for i, w := range witnesses {
		if w.InPolicy {
			n := fmt.Sprintf("w%d", i+1)
			fmt.Fprintf(&b, "witness %s %s\n", n, w.VKey)
			policyName[w.Name] = n
			members = append(members, n)
		}
	}
	fmt.Fprintf(&b, "group all-witnesses all %s\nquorum all-witnesses\n", strings.Join(members, " "))
	p, err := ParsePolicy([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return p, policyName
}

func vecSentinel(t *testing.T, name string) error {
	t.Helper()
	switch name {
	case "ErrMalformed":
		return ErrMalformed
	case "ErrUnverified":
		return ErrUnverified
	case "ErrQuorum":
		return ErrQuorum
	case "ErrProof":
		return ErrProof
	}
	t.Fatalf("unknown sentinel %q", name)
	return nil
}

// signAt runs f inside a synctest bubble whose clock reads the Unix time ts:
// our witness signers stamp cosignatures with time.Now, and the bubble's
// clock (it starts at 2000-01-01T00:00:00Z) is the one they read.
func signAt(t *testing.T, ts int64, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Unix(ts, 0).Sub(time.Now()))
		if now := time.Now().Unix(); now != ts {
			t.Fatalf("the bubble's clock reads %d, want %d", now, ts)
		}
		f(t)
	})
}

func TestVectorsCosignatures(t *testing.T) {
	var v vecCosignatures
	loadVectors(t, "cosignatures.json", &v)
	if len(v.Valid) == 0 || len(v.Invalid) == 0 || len(v.InvalidKeys) == 0 {
		t.Fatal("testdata/cosignatures.json has no vectors of some kind")
	}
	p, policyName := vecPolicy(t, v.Log, v.Witnesses)
	lv := mustVerifier(t, NewLogVerifier, v.Log.VKey)
	ls, err := NewLogSigner(v.Log.SKey)
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[string]vecKey)
	var wvs []note.Verifier
	for _, w := range v.Witnesses {
		keys[w.Name] = w
		wv := mustVerifier(t, NewWitnessVerifier, w.VKey)
		if w.InPolicy {
			wvs = append(wvs, wv)
		}
		// Our signer, from the secret key and from the bare Ed25519 key,
		// has the key ID of the vector's vkey.
		ws, err := NewWitnessSigner(w.SKey)
		if err != nil {
			t.Fatal(err)
		}
		_, vkey, err := NewWitnessSignerFrom(w.Name, vecPrivateKey(t, w))
		if err != nil {
			t.Fatal(err)
		}
		if ws.Name() != wv.Name() || ws.KeyHash() != wv.KeyHash() || vkey != w.VKey {
			t.Errorf("witness %s: our signers have key %s+%08x and vkey %s, the vector's vkey is %s", w.Name, ws.Name(), ws.KeyHash(), vkey, w.VKey)
		}
	}
	if _, vkey, err := NewLogSignerFrom(v.Log.Name, vecPrivateKey(t, v.Log)); err != nil || vkey != v.Log.VKey {
		t.Errorf("NewLogSignerFrom gives vkey %s (%v), the vector's is %s", vkey, err, v.Log.VKey)
	}

	for _, vec := range v.Valid {
		t.Run("valid/"+vec.Name, func(t *testing.T) {
			want := vec.Body + "\n" + vec.LogSignature
			for _, c := range vec.Cosignatures {
				want += c.Line
			}
			if want != vec.Signed {
				t.Fatal("the vector's signed note is not its body and signature lines")
			}
			signed := []byte(vec.Signed)

			// Our verifiers accept it.
			c, _, err := Open(signed, lv)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if string(Format(c)) != vec.Body {
				t.Errorf("Open parsed the body as %q, which formats to %q", vec.Body, Format(c))
			}
			wantCos := make(map[string]time.Time)
			wantNames := make(map[string]time.Time)
			for _, cs := range vec.Cosignatures {
				if n, ok := policyName[cs.Witness]; ok {
					wantCos[KeyID(mustVerifier(t, NewWitnessVerifier, keys[cs.Witness].VKey))] = time.Unix(cs.Time, 0).UTC()
					wantNames[n] = time.Unix(cs.Time, 0).UTC()
				}
			}
			cos, err := Cosignatures(signed, wvs...)
			if err != nil {
				t.Fatalf("Cosignatures: %v", err)
			}
			if fmt.Sprint(cos) != fmt.Sprint(wantCos) {
				t.Errorf("Cosignatures = %v, want %v", cos, wantCos)
			}
			if _, names, err := p.Verify(signed); err != nil {
				t.Errorf("Policy.Verify: %v", err)
			} else if fmt.Sprint(names) != fmt.Sprint(wantNames) {
				t.Errorf("Policy.Verify cosigners = %v, want %v", names, wantNames)
			}

			// Our signers write the same bytes: the log's signature line,
			// and each cosignature line at its time, by NewWitnessSigner
			// (through Sign) and by NewWitnessSignerFrom.
			got, err := Sign(c, ls)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != vec.Body+"\n"+vec.LogSignature {
				t.Errorf("Sign with the log key = %q, want %q", got, vec.Body+"\n"+vec.LogSignature)
			}
			for _, cs := range vec.Cosignatures {
				k := keys[cs.Witness]
				ws, err := NewWitnessSigner(k.SKey)
				if err != nil {
					t.Fatal(err)
				}
				es, _, err := NewWitnessSignerFrom(k.Name, vecPrivateKey(t, k))
				if err != nil {
					t.Fatal(err)
				}
				signAt(t, cs.Time, func(t *testing.T) {
					got, err := Sign(c, ls, ws)
					if err != nil {
						t.Fatal(err)
					}
					if want := vec.Body + "\n" + vec.LogSignature + cs.Line; string(got) != want {
						t.Errorf("Sign with the log key and %s at %d = %q, want %q", cs.Witness, cs.Time, got, want)
					}
					got, err = note.Sign(&note.Note{Text: vec.Body}, es)
					if err != nil {
						t.Fatal(err)
					}
					if want := vec.Body + "\n" + cs.Line; string(got) != want {
						t.Errorf("NewWitnessSignerFrom's cosignature by %s at %d = %q, want %q", cs.Witness, cs.Time, got, want)
					}
				})
			}
		})
	}

	for _, vec := range v.Invalid {
		t.Run("invalid/"+vec.Name, func(t *testing.T) {
			signed := []byte(vec.Signed)
			sentinel := vecSentinel(t, vec.Error)
			var err error
			switch vec.Check {
			case "open":
				_, _, err = Open(signed, lv)
			case "cosignatures":
				_, err = Cosignatures(signed, wvs...)
			case "quorum":
				// Not an error on its own: a line by an unknown key is
				// ignored. The quorum is what fails.
				var cos map[string]time.Time
				if cos, err = Cosignatures(signed, wvs...); err != nil {
					t.Fatalf("Cosignatures: %v, want no error", err)
				}
				if len(cos) >= len(wvs) {
					t.Fatalf("Cosignatures = %v: every witness counted", cos)
				}
				_, _, err = p.Verify(signed)
			default:
				t.Fatalf("unknown check %q", vec.Check)
			}
			if !errors.Is(err, sentinel) {
				t.Errorf("%s: err = %v, want one wrapping %v (%s)", vec.Check, err, sentinel, vec.Description)
			}
			if _, _, err := p.Verify(signed); !errors.Is(err, sentinel) {
				t.Errorf("Policy.Verify: err = %v, want one wrapping %v", err, sentinel)
			}
		})
	}

	for _, vec := range v.InvalidKeys {
		t.Run("invalid-key/"+vec.Name, func(t *testing.T) {
			var err error
			switch vec.Role + " " + vec.Kind {
			case "log vkey":
				_, err = NewLogVerifier(vec.Key)
			case "log skey":
				_, err = NewLogSigner(vec.Key)
			case "witness vkey":
				_, err = NewWitnessVerifier(vec.Key)
			case "witness skey":
				_, err = NewWitnessSigner(vec.Key)
			default:
				t.Fatalf("unknown role and kind %q", vec.Role+" "+vec.Kind)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want one wrapping ErrMalformed (%s)", err, vec.Description)
			}
		})
	}
}

// vecPrivateKey is the Ed25519 key of a vector's seed, after checking that
// the seed is the one in its secret key.
func vecPrivateKey(t *testing.T, k vecKey) ed25519.PrivateKey {
	t.Helper()
	seed, err := hex.DecodeString(k.Seed)
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("key %s: bad seed %q", k.Name, k.Seed)
	}
	parts := strings.SplitN(k.SKey, "+", 5) // PRIVATE, KEY, name, key ID, key
	if raw := mustB64(t, parts[len(parts)-1]); !bytes.Equal(raw[1:], seed) {
		t.Fatalf("key %s: the seed is not the secret key's", k.Name)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func TestVectorsProofs(t *testing.T) {
	var v vecProofs
	loadVectors(t, "proofs.json", &v)
	if len(v.Proofs) == 0 {
		t.Fatal("testdata/proofs.json has no proofs")
	}
	p, _ := vecPolicy(t, v.Log, v.Witnesses)
	sizes, lasts, firsts, extras := map[uint64]bool{}, 0, 0, 0
	for _, vec := range v.Proofs {
		sizes[vec.Size] = true
		if vec.Index == 0 {
			firsts++
		}
		if vec.Index == vec.Size-1 {
			lasts++
		}
		if vec.Extra != nil {
			extras++
		}
		t.Run(fmt.Sprintf("size-%d/index-%d", vec.Size, vec.Index), func(t *testing.T) {
			if !bytes.Equal(vec.Leaf, v.Entries[vec.Index]) {
				t.Fatal("the vector's leaf is not its entry")
			}
			if got := LeafHash(vec.Leaf); !bytes.Equal(got, vec.LeafHash) {
				t.Errorf("LeafHash = %x, want %x", got, vec.LeafHash)
			}

			// ParseProof and FormatProof round-trip the text, and
			// FormatProof writes it from its parts.
			pr, err := ParseProof([]byte(vec.Text))
			if err != nil {
				t.Fatalf("ParseProof: %v", err)
			}
			if pr.Index != vec.Index || !bytes.Equal(pr.Extra, vec.Extra) || fmt.Sprint(pr.Hashes) != fmt.Sprint(vec.Hashes) {
				t.Errorf("ParseProof = index %d, extra %q, hashes %x; want %d, %q, %x", pr.Index, pr.Extra, pr.Hashes, vec.Index, vec.Extra, vec.Hashes)
			}
			if got := FormatProof(pr); string(got) != vec.Text {
				t.Errorf("FormatProof(ParseProof(text)) = %q, want %q", got, vec.Text)
			}
			fresh := Proof{Extra: vec.Extra, Index: vec.Index, Hashes: vec.Hashes, Checkpoint: pr.Checkpoint}
			if got := FormatProof(fresh); string(got) != vec.Text {
				t.Errorf("FormatProof = %q, want %q", got, vec.Text)
			}

			// The receipt verifies, whole and in parts.
			c, cos, err := VerifyReceipt(p, vec.Leaf, []byte(vec.Text))
			if err != nil {
				t.Fatalf("VerifyReceipt: %v", err)
			}
			if c.Size != vec.Size || !bytes.Equal(c.Hash, vec.Root) || len(cos) != 2 {
				t.Errorf("VerifyReceipt = size %d, root %x, cosigners %v; want %d, %x, two", c.Size, c.Hash, cos, vec.Size, vec.Root)
			}
			if err := VerifyInclusion(vec.Leaf, vec.Index, vec.Hashes, c); err != nil {
				t.Errorf("VerifyInclusion: %v", err)
			}

			// And fails with any hash flipped, another leaf, another index.
			for i := range vec.Hashes {
				hs := flipHash(vec.Hashes, i)
				if err := VerifyInclusion(vec.Leaf, vec.Index, hs, c); !errors.Is(err, ErrProof) {
					t.Errorf("VerifyInclusion with hash %d flipped: err = %v, want ErrProof", i, err)
				}
				text := FormatProof(Proof{Extra: vec.Extra, Index: vec.Index, Hashes: hs, Checkpoint: pr.Checkpoint})
				if _, _, err := VerifyReceipt(p, vec.Leaf, text); !errors.Is(err, ErrProof) {
					t.Errorf("VerifyReceipt with hash %d flipped: err = %v, want ErrProof", i, err)
				}
			}
			other := append(bytes.Clone(vec.Leaf), '!')
			if _, _, err := VerifyReceipt(p, other, []byte(vec.Text)); !errors.Is(err, ErrProof) {
				t.Errorf("VerifyReceipt of another leaf: err = %v, want ErrProof", err)
			}
			if j := vec.Index ^ 1; j < vec.Size {
				if err := VerifyInclusion(vec.Leaf, j, vec.Hashes, c); !errors.Is(err, ErrProof) {
					t.Errorf("VerifyInclusion at index %d: err = %v, want ErrProof", j, err)
				}
			}
		})
	}
	for _, n := range []uint64{1, 2, 4, 8, 16, 32, 3, 5, 7, 9, 13, 17, 31, 33, 100} {
		if !sizes[n] {
			t.Errorf("no proof in a tree of size %d", n)
		}
	}
	if firsts < len(sizes) || lasts < len(sizes) || extras == 0 {
		t.Errorf("proofs of index 0: %d, of the last index: %d, for %d sizes; with extra data: %d", firsts, lasts, len(sizes), extras)
	}
}

func flipHash(hashes [][]byte, i int) [][]byte {
	hs := make([][]byte, len(hashes))
	copy(hs, hashes)
	hs[i] = bytes.Clone(hs[i])
	hs[i][HashSize/2] ^= 0x01
	return hs
}

func TestVectorsConsistency(t *testing.T) {
	var v vecConsistency
	loadVectors(t, "consistency.json", &v)
	if len(v.Proofs) == 0 {
		t.Fatal("testdata/consistency.json has no proofs")
	}
	for _, vec := range v.Proofs {
		c := Checkpoint{Origin: "vectors.tidemark.example/log", Size: vec.NewSize, Hash: vec.NewRoot}
		if err := VerifyConsistency(vec.OldSize, vec.OldRoot, vec.Hashes, c); err != nil {
			t.Errorf("%d to %d: %v", vec.OldSize, vec.NewSize, err)
		}
		for i := range vec.Hashes {
			if err := VerifyConsistency(vec.OldSize, vec.OldRoot, flipHash(vec.Hashes, i), c); !errors.Is(err, ErrProof) {
				t.Errorf("%d to %d with hash %d flipped: err = %v, want ErrProof", vec.OldSize, vec.NewSize, i, err)
			}
		}
		oldRoot := flipHash([][]byte{vec.OldRoot}, 0)[0]
		if err := VerifyConsistency(vec.OldSize, oldRoot, vec.Hashes, c); !errors.Is(err, ErrProof) {
			t.Errorf("%d to %d with the old root flipped: err = %v, want ErrProof", vec.OldSize, vec.NewSize, err)
		}
	}
}
