package log

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
)

func TestTruncatedEvent(t *testing.T) {
	event := fmt.Sprintf(`{"auditID":"a","stage":"ResponseComplete","verb":"get","small":1,"medium":"%s","huge":"%s","tidemark_omitted":"mine","na\"me":"q"}`,
		strings.Repeat("m", 500), strings.Repeat("h", 5000))
	canon, err := checkpoint.Canonicalize([]byte(event))
	if err != nil {
		t.Fatal(err)
	}
	for _, room := range []int{2000, 600, 300, 200} {
		t.Run(fmt.Sprint(room), func(t *testing.T) {
			out, err := truncatedEvent(canon, room, []string{"auditID", "stage", "verb"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := checkpoint.Canonicalize(out)
			if err != nil {
				t.Fatalf("stand-in is not I-JSON: %v\n%s", err, out)
			}
			if len(c) > room {
				t.Errorf("stand-in is %d bytes in canonical JSON, room was %d: %s", len(c), room, c)
			}
			if len(c) != len(out) {
				t.Errorf("size accounting: %d bytes written, %d canonical", len(out), len(c))
			}
			var m map[string]json.RawMessage
			json.Unmarshal(c, &m)
			sum := sha256.Sum256(canon)
			if string(m["tidemark_truncated"]) != "true" || string(m["tidemark_original_sha256"]) != `"`+hex.EncodeToString(sum[:])+`"` ||
				string(m["tidemark_original_size"]) != fmt.Sprint(len(canon)) {
				t.Errorf("marker members wrong: %s", c)
			}
			if _, ok := m["huge"]; ok {
				t.Errorf("huge member kept in %d bytes", room)
			}
			if room >= 300 && string(m["auditID"]) != `"a"` {
				t.Errorf("auditID not kept first: %s", c)
			}
			// The sender's own "tidemark_omitted" cannot stay: it is listed.
			if om := string(m["tidemark_omitted"]); room >= 300 && !strings.Contains(om, `"tidemark_omitted"`) {
				t.Errorf("omitted list %s", om)
			}
			t.Logf("%s", c)
		})
	}
	if _, err := truncatedEvent(canon, 100, nil); err == nil {
		t.Error("a room smaller than the marker was accepted")
	}
}
