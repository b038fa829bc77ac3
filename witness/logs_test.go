package witness

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
)

func TestParseLogList(t *testing.T) {
	_, k1, _ := checkpoint.GenerateLogKey("example.com/a")
	_, k2, _ := checkpoint.GenerateLogKey("example.com/b")
	good := "# comment\n\nlogs/v0\n\nvkey " + k1 + "\nqpd 86400\ncontact ops (at) example.com\n\n" +
		"vkey " + k2 + "\norigin example.com/b-origin\nqpd 24\n"
	logs, err := ParseLogList([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 2 || logs[0].Origin != "example.com/a" || logs[0].QPD != 86400 || logs[0].Contact != "ops (at) example.com" ||
		logs[1].Origin != "example.com/b-origin" || logs[1].QPD != 24 {
		t.Errorf("parsed %+v", logs)
	}
	for name, bad := range map[string]string{
		"no header":        "vkey " + k1 + "\nqpd 1\n",
		"wrong header":     "logs/v1\n",
		"bad key":          "logs/v0\nvkey " + k1[:len(k1)-2] + "AA\nqpd 1\n",
		"witness key":      "logs/v0\nvkey example.com/w+00000000+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nqpd 1\n",
		"no qpd":           "logs/v0\nvkey " + k1 + "\n",
		"no qpd, then log": "logs/v0\nvkey " + k1 + "\nvkey " + k2 + "\nqpd 1\n",
		"qpd 0":            "logs/v0\nvkey " + k1 + "\nqpd 0\n",
		"qpd leading zero": "logs/v0\nvkey " + k1 + "\nqpd 01\n",
		"qpd twice":        "logs/v0\nvkey " + k1 + "\nqpd 1\nqpd 2\n",
		"origin after qpd": "logs/v0\nvkey " + k1 + "\nqpd 1\norigin x\n",
		"unknown keyword":  "logs/v0\nvkey " + k1 + "\nqpd 1\nbastion none\n",
		"duplicate vkey":   "logs/v0\nvkey " + k1 + "\nqpd 1\nvkey " + k1 + "\nqpd 1\n",
		"tab":              "logs/v0\nvkey\t" + k1 + "\nqpd 1\n",
		"CRLF":             "logs/v0\r\nvkey " + k1 + "\r\nqpd 1\r\n",
		"trailing space":   "logs/v0\nvkey " + k1 + "\nqpd 1 \n",
		"qpd before vkey":  "logs/v0\nqpd 1\n",
	} {
		if _, err := ParseLogList([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseFollow(t *testing.T) {
	_, k1, _ := checkpoint.GenerateLogKey("example.com/a")
	_, k1b, _ := checkpoint.GenerateLogKey("example.com/a")
	logs, err := ParseFollow([]byte("# logs\nlog " + k1 + " https://log.example.com/a # comment\nlog " + k1b + " https://log.example.com/a\n\n"))
	if err != nil || len(logs) != 2 || logs[0].URL != "https://log.example.com/a" {
		t.Fatalf("%+v %v", logs, err)
	}
	for name, bad := range map[string]string{
		"no URL":      "log " + k1 + "\n",
		"witness":     "log " + k1 + " https://x\nwitness w example.com/w+00000000+BAAA https://w\n",
		"quorum":      "quorum none\n",
		"bad URL":     "log " + k1 + " ftp://x\n",
		"two URLs":    "log " + k1 + " https://x\nlog " + k1b + " https://y\n",
		"same key":    "log " + k1 + " https://x\nlog " + k1 + " https://x\n",
		"CR":          "log " + k1 + " https://x\r\n",
		"URL + query": "log " + k1 + " https://x/?a=b\n",
	} {
		if _, err := ParseFollow([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseAddRequest(f *testing.F) {
	f.Add([]byte("old 0\n\nexample.com/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAA\n"))
	f.Add([]byte("old 5\n" + strings.Repeat("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 3) + "\nx"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseAddRequest(b)
		if err != nil {
			return
		}
		if len(r.Proof) > maxProofLines || len(r.Checkpoint) == 0 {
			t.Fatalf("accepted %q", b)
		}
		if got := body(r.Old, r.Proof, r.Checkpoint); got != string(b) {
			t.Fatalf("not canonical: %q parsed and formatted to %q", b, got)
		}
	})
}

func FuzzParseLogList(f *testing.F) {
	_, k1, _ := checkpoint.GenerateLogKey("example.com/a")
	f.Add([]byte("logs/v0\nvkey " + k1 + "\norigin o\nqpd 86400\ncontact c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		logs, err := ParseLogList(b)
		if err != nil {
			return
		}
		for _, l := range logs {
			if l.QPD == 0 || l.Origin == "" || l.Verifier == nil {
				t.Fatalf("accepted %+v from %q", l, b)
			}
		}
	})
}

// TestLogListErrorsNameTheLine: an error names the line it is about, never a
// byte offset. A log without a qpd line at the end of the file was reported
// "before line <the file's length in bytes + 1>".
func TestLogListErrorsNameTheLine(t *testing.T) {
	_, k1, _ := checkpoint.GenerateLogKey("example.com/a")
	_, k2, _ := checkpoint.GenerateLogKey("example.com/b")
	for _, tc := range []struct{ name, list, want string }{
		{"no qpd at the end", "logs/v0\n\nvkey " + k1 + "\n", "line 3: the log of this vkey has no qpd line"},
		{"no qpd, comment after", "# list\nlogs/v0\nvkey " + k1 + "\norigin o\n# end\n", "line 3: the log of this vkey has no qpd line"},
		{"no qpd, then a log", "logs/v0\nvkey " + k1 + "\n\nvkey " + k2 + "\nqpd 1\n", "line 2: the log of this vkey has no qpd line"},
		{"qpd 0", "logs/v0\nvkey " + k1 + "\n\nqpd 0\n", "line 4: qpd"},
		{"duplicate vkey", "logs/v0\nvkey " + k1 + "\nqpd 1\nvkey " + k1 + "\nqpd 1\n", "line 4: vkey already listed on line 2"},
	} {
		_, err := ParseLogList([]byte(tc.list))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestFollowErrorsNameTheLine: the --follow parser counts lines too,
// comments and blank lines included.
func TestFollowErrorsNameTheLine(t *testing.T) {
	_, k1, _ := checkpoint.GenerateLogKey("example.com/a")
	for _, tc := range []struct{ name, list, want string }{
		{"no URL", "# logs\n\nlog " + k1 + "\n", "line 3: want \"log VKEY URL\""},
		{"same key", "log " + k1 + " https://x # a\n# b\nlog " + k1 + " https://x\n", "line 3: key already listed on line 1"},
		{"bad URL", "\n\n\n\nlog " + k1 + " ftp://x\n", "line 5: URL"},
	} {
		_, err := ParseFollow([]byte(tc.list))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// oldDecodeHash is how ParseAddRequest decoded a proof line before
// decodeHash: the reference.
func oldDecodeHash(line []byte) ([]byte, bool) {
	h, err := base64.StdEncoding.Strict().DecodeString(string(line))
	if err != nil || len(h) != checkpoint.HashSize || base64.StdEncoding.EncodeToString(h) != string(line) {
		return nil, false
	}
	return h, true
}

// TestDecodeHashIsCanonicalBase64: decodeHash accepts exactly the lines the
// reference does (the standard base64, padded, of 32 bytes, with zero
// padding bits) and gives the same bytes.
func TestDecodeHashIsCanonicalBase64(t *testing.T) {
	h := make([]byte, 32)
	for i := range h {
		h[i] = byte(i * 7)
	}
	good := base64.StdEncoding.EncodeToString(h)
	lines := []string{good, "", good[:43], good + "=", good[:42] + "==", good[:43] + "A", "\r" + good[1:], good[:20] + "\r" + good[21:],
		good[:43] + "\r", base64.StdEncoding.EncodeToString(h[:31]), base64.StdEncoding.EncodeToString(append(h, 0)),
		base64.RawStdEncoding.EncodeToString(h) + "A", base64.URLEncoding.EncodeToString(append([]byte{0xfb, 0xff}, h[2:]...))}
	// Every character in the last place before '=', which carries 2
	// padding bits: a quarter of them are canonical.
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=." {
		lines = append(lines, good[:42]+string(c)+"=")
	}
	canonical := 0
	for _, line := range lines {
		got, ok := decodeHash([]byte(line))
		want, wantOK := oldDecodeHash([]byte(line))
		if ok != wantOK || !bytes.Equal(got, want) {
			t.Errorf("decodeHash(%q) = %x, %v; the reference %x, %v", line, got, ok, want, wantOK)
		}
		if ok {
			canonical++
		}
	}
	if canonical != 1+16 {
		t.Errorf("%d lines decoded, want 17", canonical)
	}
}

// FuzzDecodeHash: decodeHash is the reference on any line.
func FuzzDecodeHash(f *testing.F) {
	f.Add([]byte("AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk="))
	f.Fuzz(func(t *testing.T, line []byte) {
		got, ok := decodeHash(line)
		want, wantOK := oldDecodeHash(line)
		if ok != wantOK || !bytes.Equal(got, want) {
			t.Errorf("decodeHash(%q) = %x, %v; the reference %x, %v", line, got, ok, want, wantOK)
		}
	})
}

// BenchmarkParseAddRequest: a request with a 20-line proof, as for a log of
// about a million entries.
func BenchmarkParseAddRequest(b *testing.B) {
	proof := make([][]byte, 20)
	for i := range proof {
		proof[i] = bytes.Repeat([]byte{byte(i)}, 32)
	}
	req := []byte(body(1000000, proof, []byte("example.com/log\n1000001\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAAAAAA\n")))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAddRequest(req); err != nil {
			b.Fatal(err)
		}
	}
}
