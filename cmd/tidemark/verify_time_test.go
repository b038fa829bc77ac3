package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// cosignAt adds to a signed checkpoint a cosignature/v1 line by the witness
// secret key skey, dated at (C2SP tlog-cosignature: the key hash, the
// timestamp, an Ed25519 signature over "cosignature/v1\ntime T\n" and the
// body).
func cosignAt(t *testing.T, signed []byte, skey string, at time.Time) []byte {
	t.Helper()
	f := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(f[4])
	if err != nil || len(raw) != 33 {
		t.Fatalf("witness key %q", skey)
	}
	var hash uint32
	fmt.Sscanf(f[3], "%08x", &hash)
	body := signed[:strings.LastIndex(string(signed), "\n\n")+1]
	msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", at.Unix(), body)
	sig := binary.BigEndian.AppendUint32(nil, hash)
	sig = binary.BigEndian.AppendUint64(sig, uint64(at.Unix()))
	sig = append(sig, ed25519.Sign(ed25519.NewKeyFromSeed(raw[1:]), []byte(msg))...)
	return append(signed, []byte("— "+f[2]+" "+base64.StdEncoding.EncodeToString(sig)+"\n")...)
}

// Issue 9, hole 6: `tidemark verify` said the entry existed by the earliest
// cosignature of any witness, so one witness with a slow clock set it. It
// must say the time by which a quorum had cosigned.
func TestVerifyExistedByIsWhenAQuorumHadCosigned(t *testing.T) {
	lskey, lvkey, _ := checkpoint.GenerateLogKey("example.com/log")
	ls, _ := checkpoint.NewLogSigner(lskey)
	policy := "log " + lvkey + "\n"
	var wkeys []string
	for i := 1; i <= 3; i++ {
		skey, vkey, _ := checkpoint.GenerateWitnessKey(fmt.Sprintf("w%d.example", i))
		wkeys = append(wkeys, skey)
		policy += fmt.Sprintf("witness w%d %s\n", i, vkey)
	}
	policy += "group g 2 w1 w2 w3\nquorum g\n"
	leaf := []byte("one entry")
	signed, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: "example.com/log", Size: 1, Hash: checkpoint.LeafHash(leaf)}, ls)
	if err != nil {
		t.Fatal(err)
	}
	honest := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	signed = cosignAt(t, signed, wkeys[0], honest.AddDate(-1, 0, 0)) // a clock a year slow
	signed = cosignAt(t, signed, wkeys[1], honest)
	signed = cosignAt(t, signed, wkeys[2], honest.Add(2*time.Second))
	proof := checkpoint.FormatProof(checkpoint.Proof{Index: 0, Checkpoint: signed})
	receipt, _ := json.Marshal(checkpoint.Receipt{Index: 0, Leaf: leaf, Proof: string(proof)})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy"), []byte(policy), 0o644)
	os.WriteFile(filepath.Join(dir, "receipt.json"), receipt, 0o644)
	out, code := run(t, dir, "verify", "--policy", "policy", "receipt.json")
	if code != 0 {
		t.Fatalf("verify: %d %s", code, out)
	}
	if want := "existed by " + honest.Format(time.RFC3339); !strings.Contains(out, want) {
		t.Errorf("verify says:\n%s\nwant %q: the time a quorum (2 of 3) had cosigned, not the slow witness's", out, want)
	}
}
