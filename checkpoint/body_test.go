package checkpoint

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

const (
	// exampleRoot is a 32-byte root hash in base64, from the package doc.
	exampleRoot = "SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I="
	exampleBody = "audit.example.com/prod\n10\n" + exampleRoot + "\n"
)

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want Checkpoint
	}{
		{"plain", exampleBody, Checkpoint{Origin: "audit.example.com/prod", Size: 10}},
		{"size zero", "o\n0\n" + exampleRoot + "\n", Checkpoint{Origin: "o", Size: 0}},
		{"max size", "o\n18446744073709551615\n" + exampleRoot + "\n", Checkpoint{Origin: "o", Size: 1<<64 - 1}},
		{"extensions", "o\n1\n" + exampleRoot + "\next one\n— two\n", Checkpoint{Origin: "o", Size: 1, Extensions: []string{"ext one", "— two"}}},
		{"origin with spaces and unicode", "Example Log — ü\n1\n" + exampleRoot + "\n", Checkpoint{Origin: "Example Log — ü", Size: 1}},
		{"all-zero hash", "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", Checkpoint{Origin: "o", Size: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Origin != tc.want.Origin || c.Size != tc.want.Size || !slices.Equal(c.Extensions, tc.want.Extensions) || len(c.Hash) != HashSize {
				t.Errorf("Parse = %+v, want %+v", c, tc.want)
			}
			if got := Format(c); string(got) != tc.body {
				t.Errorf("Format(Parse(x)) = %q, want %q", got, tc.body)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	const h = exampleRoot
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"empty", "", "does not end with a newline"},
		{"no final newline", "o\n1\n" + h, "does not end with a newline"},
		{"two lines", "o\n1\n", "want at least 3"},
		{"empty origin", "\n1\n" + h + "\n", "origin (line 1) is empty"},
		{"leading zero", "o\n01\n" + h + "\n", "leading zero"},
		{"double zero", "o\n00\n" + h + "\n", "leading zero"},
		{"plus sign", "o\n+1\n" + h + "\n", "not a decimal"},
		{"minus sign", "o\n-1\n" + h + "\n", "not a decimal"},
		{"hex size", "o\n0x1\n" + h + "\n", "not a decimal"},
		{"space in size", "o\n1 \n" + h + "\n", "not a decimal"},
		{"empty size", "o\n\n" + h + "\n", "empty number"},
		{"overflow", "o\n18446744073709551616\n" + h + "\n", "larger than 2^64-1"},
		{"bad base64", "o\n1\n" + strings.Replace(h, "S", "!", 1) + "\n", "invalid base64"},
		{"unpadded base64", "o\n1\n" + strings.TrimSuffix(h, "=") + "\n", "invalid base64"},
		{"url base64", "o\n1\nSBNJTRN-FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=\n", "invalid base64"},
		{"non-canonical padding bits", "o\n1\nSBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7J=\n", "invalid base64"},
		{"short hash", "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n", "31 bytes"},
		{"long hash", "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n", "34 bytes"},
		{"empty hash", "o\n1\n\n", "empty base64"},
		{"empty extension", "o\n1\n" + h + "\n\n", "extension line (line 4) is empty"},
		{"empty extension between", "o\n1\n" + h + "\na\n\nb\n", "extension line (line 5) is empty"},
		{"trailing bytes", "o\n1\n" + h + "\nx", "does not end with a newline"},
		{"CRLF", "o\r\n1\r\n" + h + "\r\n", "carriage return"},
		{"CR in hash line", "o\n1\n" + h + "\r\n", "carriage return"},
		{"tab", "o\t\n1\n" + h + "\n", "control character"},
		{"NUL", "o\x00\n1\n" + h + "\n", "control character"},
		{"invalid UTF-8", "o\xff\n1\n" + h + "\n", "invalid UTF-8"},
		{"too large", "o\n1\n" + h + "\n" + strings.Repeat("x", MaxCheckpointSize) + "\n", "more than the limit"},
		{"signed note", exampleBody + "\n— o AAAA\n", "extension line (line 4) is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.body))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want error", tc.body, c)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tc.body, err, tc.wantErr)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse error %q does not wrap ErrMalformed", err)
			}
			if !strings.HasPrefix(err.Error(), "checkpoint: ") {
				t.Errorf("error %q does not start with \"checkpoint: \"", err)
			}
		})
	}
}

func TestParseAtMaxSize(t *testing.T) {
	head := "o\n1\n" + exampleRoot + "\n"
	body := head + strings.Repeat("x", MaxCheckpointSize-len(head)-1) + "\n"
	if len(body) != MaxCheckpointSize {
		t.Fatalf("test body is %d bytes", len(body))
	}
	if _, err := Parse([]byte(body)); err != nil {
		t.Errorf("Parse of a body of exactly MaxCheckpointSize: %v", err)
	}
}

func TestFormatDoesNotCheckButSignDoes(t *testing.T) {
	for _, c := range []Checkpoint{
		{Origin: "o", Size: 1, Hash: make([]byte, 31)},
		{Origin: "", Size: 1, Hash: make([]byte, 32)},
		{Origin: "o\n1", Size: 1, Hash: make([]byte, 32)},
		{Origin: "o", Size: 1, Hash: make([]byte, 32), Extensions: []string{""}},
		{Origin: "o", Size: 1, Hash: make([]byte, 32), Extensions: []string{"a\nb"}},
		{Origin: "o\r", Size: 1, Hash: make([]byte, 32)},
	} {
		_ = Format(c) // must not panic
		if _, err := Sign(c, exampleLogSigner(t)); err == nil {
			t.Errorf("Sign(%+v) succeeded, want an error", c)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleBody))
	f.Add([]byte("o\n0\n" + exampleRoot + "\next\n"))
	f.Add([]byte("o\n01\n" + exampleRoot + "\n"))
	f.Add([]byte("o\n1\nSBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7J=\n"))
	f.Add([]byte(exampleBody + "\n— o AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if c.Origin != "" || c.Hash != nil {
				t.Fatalf("Parse returned %+v with error %v", c, err)
			}
			return
		}
		if got := Format(c); !bytes.Equal(got, b) {
			t.Fatalf("Format(Parse(%q)) = %q", b, got)
		}
		if err := c.check(); err != nil {
			t.Fatalf("a parsed checkpoint fails check: %v", err)
		}
	})
}
