package checkpoint

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func FuzzParseReceipt(f *testing.F) {
	rc := Receipt{Index: 0, Leaf: []byte("x"), Proof: "c2sp.org/tlog-proof@v1\nindex 0\n\nexample.com/log\n1\n" + strings.Repeat("A", 43) + "=\n\n— example.com/log AAAAAA==\n"}
	b, _ := json.Marshal(rc)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReceipt(b)
		if err != nil {
			return
		}
		again, _ := json.Marshal(r)
		r2, err := ParseReceipt(again)
		if err != nil || r2.Index != r.Index || !bytes.Equal(r2.Leaf, r.Leaf) || r2.Proof != r.Proof {
			t.Fatalf("receipt %q does not survive a round trip: %v", b, err)
		}
	})
}
