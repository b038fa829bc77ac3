package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var commitTime = time.Date(2026, 11, 28, 1, 2, 3, 4, time.UTC)

func testOpening(t *testing.T) (Opening, CommitmentLeaf, []byte) {
	t.Helper()
	ev, _, _, err := AppendEventLeaf(nil, []byte(`{"actor":"alice","action":"secret.read"}`), commitTime, "vault", "")
	if err != nil {
		t.Fatal(err)
	}
	salt, err := NewSalt()
	if err != nil {
		t.Fatal(err)
	}
	c := CommitmentLeaf{Received: commitTime, Source: "vault", Commitment: Commit(salt, ev)}
	return Opening{Salt: salt, Leaf: ev}, c, AppendCommitmentLeaf(nil, c)
}

func TestCommitmentLeafRoundTrip(t *testing.T) {
	o, c, b := testOpening(t)
	if !bytes.HasPrefix(b, []byte(`{"commitment":"`)) || !bytes.HasSuffix(b, []byte(`","received":"2026-11-28T01:02:03.000000004Z","source":"vault","v":2}`)) {
		t.Fatalf("leaf = %s", b)
	}
	got, err := ParseCommitmentLeaf(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != c {
		t.Fatalf("parsed %+v, want %+v", got, c)
	}
	if KindOf(b) != KindCommitment {
		t.Fatalf("KindOf = %v", KindOf(b))
	}
	l, err := o.Verify(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(l.Event) != `{"action":"secret.read","actor":"alice"}` {
		t.Fatalf("opened event %s", l.Event)
	}
}

func TestParseCommitmentLeafRefusesNonCanonical(t *testing.T) {
	_, _, b := testOpening(t)
	s := string(b)
	upper := strings.Replace(s, s[15:79], strings.ToUpper(s[15:79]), 1)
	for name, bad := range map[string]string{
		"uppercase hex":  upper,
		"short hash":     strings.Replace(s, s[15:17], "", 1),
		"version 1":      strings.Replace(s, `"v":2`, `"v":1`, 1),
		"space":          strings.Replace(s, `,"v"`, `, "v"`, 1),
		"extra member":   strings.Replace(s, `"source"`, `"secret":"x","source"`, 1),
		"no source":      strings.Replace(s, `,"source":"vault"`, ``, 1),
		"event inside":   strings.Replace(s, `{"commitment"`, `{"event":{},"commitment"`, 1),
		"received short": strings.Replace(s, `.000000004Z`, `.4Z`, 1),
		"not hex":        strings.Replace(s, s[15:17], "zz", 1),
	} {
		if _, err := ParseCommitmentLeaf([]byte(bad)); !errors.Is(err, ErrLeaf) {
			t.Errorf("%s: ParseCommitmentLeaf(%s) = %v, want ErrLeaf", name, bad, err)
		}
	}
}

func TestOpeningRefusesEveryChange(t *testing.T) {
	o, c, _ := testOpening(t)
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	other, _, _, _ := AppendEventLeaf(nil, []byte(`{"actor":"alice","action":"secret.read"}`), commitTime, "other", "")
	for name, bad := range map[string]Opening{
		"salt changed":   {Salt: flip(o.Salt, 0), Leaf: o.Leaf},
		"leaf changed":   {Salt: o.Salt, Leaf: flip(o.Leaf, 12)},
		"short salt":     {Salt: o.Salt[:31], Leaf: o.Leaf},
		"no salt":        {Leaf: o.Leaf},
		"another source": {Salt: o.Salt, Leaf: other},
	} {
		if _, err := bad.Verify(c); !errors.Is(err, ErrOpening) {
			t.Errorf("%s: Verify = %v, want ErrOpening", name, err)
		}
	}
	// An opening whose hash matches but whose leaf disagrees with the
	// commitment leaf's time or source is refused too: the commitment leaf
	// is what the log vouches for.
	lateC := c
	lateC.Received = c.Received.Add(time.Second)
	if _, err := o.Verify(lateC); !errors.Is(err, ErrOpening) {
		t.Errorf("opening against a commitment leaf of another time: %v", err)
	}
	c2 := c
	c2.Source = "intruder"
	if _, err := o.Verify(c2); !errors.Is(err, ErrOpening) {
		t.Errorf("opening against a commitment leaf of another source: %v", err)
	}
	// A leaf larger than any leaf the log writes is refused, however it hashes.
	big, _, _, _ := AppendEventLeaf(nil, []byte(`{"a":"`+strings.Repeat("x", MaxLeafSize)+`"}`), commitTime, "vault", "")
	cBig := CommitmentLeaf{Received: commitTime, Source: "vault", Commitment: Commit(o.Salt, big)}
	if _, err := (Opening{Salt: o.Salt, Leaf: big}).Verify(cBig); !errors.Is(err, ErrOpening) {
		t.Errorf("oversized event leaf: %v", err)
	}
	// A leaf that hashes right but is not a canonical event leaf is refused.
	raw := []byte(`{"event":{"b":1, "a":2},"received":"x","source":"vault","v":1}`)
	c3 := CommitmentLeaf{Received: commitTime, Source: "vault", Commitment: Commit(o.Salt, raw)}
	if _, err := (Opening{Salt: o.Salt, Leaf: raw}).Verify(c3); !errors.Is(err, ErrOpening) || !errors.Is(err, ErrLeaf) {
		t.Errorf("non-canonical leaf: %v", err)
	}
}

func TestErasureLeafRoundTrip(t *testing.T) {
	e := Erasure{Received: commitTime, Source: "dpo", Entries: []IndexRange{{5, 6}, {10, 20}}, Reason: "GDPR art. 17 request #42 \"quoted\""}
	b, err := AppendErasureLeaf(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"erasure":{"entries":[[5,6],[10,20]],"reason":"GDPR art. 17 request #42 \"quoted\""},"received":"2026-11-28T01:02:03.000000004Z","source":"dpo","v":2}`
	if string(b) != want {
		t.Fatalf("leaf\n%s\nwant\n%s", b, want)
	}
	got, err := ParseErasureLeaf(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Received.Equal(e.Received) || got.Source != e.Source || got.Reason != e.Reason || len(got.Entries) != 2 || got.Entries[1] != (IndexRange{10, 20}) {
		t.Fatalf("parsed %+v", got)
	}
	if KindOf(b) != KindErasure {
		t.Fatal(KindOf(b))
	}
	for i, want := range map[uint64]bool{4: false, 5: true, 6: false, 9: false, 10: true, 19: true, 20: false} {
		if got.Covers(i) != want {
			t.Errorf("Covers(%d) = %v", i, !want)
		}
	}
}

func TestErasureLeafRules(t *testing.T) {
	ok := Erasure{Received: commitTime, Source: "dpo", Entries: []IndexRange{{1, 2}}, Reason: "r"}
	for name, e := range map[string]Erasure{
		"no ranges":       {Received: commitTime, Source: "dpo", Reason: "r"},
		"empty range":     {Received: commitTime, Source: "dpo", Entries: []IndexRange{{3, 3}}, Reason: "r"},
		"backwards":       {Received: commitTime, Source: "dpo", Entries: []IndexRange{{4, 3}}, Reason: "r"},
		"unsorted":        {Received: commitTime, Source: "dpo", Entries: []IndexRange{{5, 6}, {1, 2}}, Reason: "r"},
		"touching":        {Received: commitTime, Source: "dpo", Entries: []IndexRange{{1, 2}, {2, 3}}, Reason: "r"},
		"overlapping":     {Received: commitTime, Source: "dpo", Entries: []IndexRange{{1, 4}, {3, 5}}, Reason: "r"},
		"past 2^53":       {Received: commitTime, Source: "dpo", Entries: []IndexRange{{1, 1 << 60}}, Reason: "r"},
		"no reason":       {Received: commitTime, Source: "dpo", Entries: ok.Entries},
		"long reason":     {Received: commitTime, Source: "dpo", Entries: ok.Entries, Reason: strings.Repeat("x", MaxErasureReason+1)},
		"invalid reason":  {Received: commitTime, Source: "dpo", Entries: ok.Entries, Reason: "\xff"},
		"too many ranges": {Received: commitTime, Source: "dpo", Entries: manyRanges(MaxErasureRanges + 1), Reason: "r"},
	} {
		if _, err := AppendErasureLeaf(nil, e); !errors.Is(err, ErrLeaf) {
			t.Errorf("%s: AppendErasureLeaf = %v, want ErrLeaf", name, err)
		}
	}
	if _, err := AppendErasureLeaf(nil, Erasure{Received: commitTime, Source: "dpo", Entries: manyRanges(MaxErasureRanges), Reason: "r"}); err != nil {
		t.Errorf("the most ranges allowed: %v", err)
	}
	b, _ := AppendErasureLeaf(nil, ok)
	s := string(b)
	for name, bad := range map[string]string{
		"space in ranges":  strings.Replace(s, `[[1,2]]`, `[[1, 2]]`, 1),
		"leading zero":     strings.Replace(s, `[[1,2]]`, `[[01,2]]`, 1),
		"float":            strings.Replace(s, `[[1,2]]`, `[[1.0,2]]`, 1),
		"three numbers":    strings.Replace(s, `[[1,2]]`, `[[1,2,3]]`, 1),
		"touching":         strings.Replace(s, `[[1,2]]`, `[[1,2],[2,3]]`, 1),
		"negative":         strings.Replace(s, `[[1,2]]`, `[[-1,2]]`, 1),
		"extra member":     strings.Replace(s, `"reason"`, `"by":"x","reason"`, 1),
		"not an array":     strings.Replace(s, `[[1,2]]`, `{}`, 1),
		"version 1":        strings.Replace(s, `"v":2`, `"v":1`, 1),
		"reason not a str": strings.Replace(s, `"reason":"r"`, `"reason":1`, 1),
		"escaped name":     strings.Replace(s, `"reason"`, `"\u0072eason"`, 1),
	} {
		if _, err := ParseErasureLeaf([]byte(bad)); !errors.Is(err, ErrLeaf) {
			t.Errorf("%s: ParseErasureLeaf(%s) = %v, want ErrLeaf", name, bad, err)
		}
	}
}

func manyRanges(n int) []IndexRange {
	r := make([]IndexRange, n)
	for i := range r {
		r[i] = IndexRange{uint64(2 * i), uint64(2*i + 1)}
	}
	return r
}

// The raw endpoint refuses what claims to be any leaf the log writes, however
// it is spelled, so that a writer cannot forge an erasure or a commitment.
func TestClaimsCommitmentAndErasureLeaves(t *testing.T) {
	for body, want := range map[string]LeafKind{
		`{"v":2,"commitment":"x"}`:              KindCommitment,
		`{"commitment":"x","v":3}`:              KindCommitment,
		`{"\u0076":2,"commitment":"x"}`:         KindCommitment,
		`{"v":2,"\u0065rasure":{}}`:             KindErasure,
		` {"erasure":[],"v":null}`:              KindErasure,
		`{"v":1,"event":{},"commitment":"x"}`:   KindEvent,
		`{"commitment":"x"}`:                    KindRaw,
		`{"erasure":{}}`:                        KindRaw,
		`["v","erasure"]`:                       KindRaw,
		`{"a":{"v":2,"erasure":{}}}`:            KindRaw,
		`{"v":2,"erasure":` + deep(20000) + `}`: KindErasure,
	} {
		if got := KindOf([]byte(body)); got != want {
			t.Errorf("KindOf(%.60s) = %v, want %v", body, got, want)
		}
		if got := ClaimsEventLeaf([]byte(body)); got != (want != KindRaw) {
			t.Errorf("ClaimsEventLeaf(%.60s) = %v", body, got)
		}
	}
}

func deep(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

func TestReceiptWithOpening(t *testing.T) {
	o, _, leaf := testOpening(t)
	r := Receipt{Index: 0, Leaf: leaf, Opening: &o}
	l, err := r.Event()
	if err != nil {
		t.Fatal(err)
	}
	if l.Source != "vault" {
		t.Fatal(l.Source)
	}
	r.Opening = nil
	if _, err := r.Event(); !errors.Is(err, ErrNoEvent) {
		t.Fatalf("no opening: %v", err)
	}
	bad := o
	bad.Salt = bytes.Repeat([]byte{1}, SaltSize)
	r.Opening = &bad
	if _, err := r.Event(); !errors.Is(err, ErrOpening) {
		t.Fatalf("wrong salt: %v", err)
	}
	// An opening on an event leaf is refused: it could only mislead.
	ev, _, _, _ := AppendEventLeaf(nil, []byte(`{"a":1}`), commitTime, "vault", "")
	if _, err := (Receipt{Leaf: ev, Opening: &o}).Event(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("opening on an event leaf: %v", err)
	}
}

func FuzzParseCommitmentAndErasureLeaves(f *testing.F) {
	_, _, c := testOpening(&testing.T{})
	e, _ := AppendErasureLeaf(nil, Erasure{Received: commitTime, Source: "dpo", Entries: []IndexRange{{1, 2}, {7, 9}}, Reason: "r"})
	f.Add(c)
	f.Add(e)
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseCommitmentLeaf(b); err == nil {
			if !bytes.Equal(AppendCommitmentLeaf(nil, c), b) {
				t.Fatalf("accepted a commitment leaf that is not canonical: %q", b)
			}
			if KindOf(b) != KindCommitment {
				t.Fatalf("KindOf(%q) = %v", b, KindOf(b))
			}
		}
		if e, err := ParseErasureLeaf(b); err == nil {
			again, err := AppendErasureLeaf(nil, e)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("accepted an erasure leaf that is not canonical: %q (%v)", b, err)
			}
			if KindOf(b) != KindErasure {
				t.Fatalf("KindOf(%q) = %v", b, KindOf(b))
			}
		}
	})
}

// KindOf agrees with ClaimsEventLeaf: bytes that look like a leaf at both
// ends but are not JSON claim nothing (POST /add takes them as raw).
func TestKindOfNotJSONIsRaw(t *testing.T) {
	for _, b := range []string{
		`{"event":{"n":01},"received":"x","source":"s","v":1}`,
		`{"commitment":"zz" junk,"v":2}`,
		`{"erasure":{,"v":2}`,
	} {
		if k := KindOf([]byte(b)); k != KindRaw {
			t.Errorf("KindOf(%s) = %v, want raw", b, k)
		}
	}
}

// Attacks by a receipt's holder on `tidemark verify`: receipts whose proofs
// are good (the leaves are in a witnessed tree) with an opening that is
// forged, that opens another entry's commitment, or that sits on a leaf
// that is not a commitment leaf. Each is refused, in its JSON form too; a
// good opening verifies and shows its event.
func TestReceiptOpeningAttacks(t *testing.T) {
	f := newReceiptFixture(t)
	o13, _, c13 := testOpening(t)
	o14, _, c14 := testOpening(t)
	f.tree.AppendData(c13)
	f.tree.AppendData(c14)
	f.tree.AppendData([]byte("raw entry 15"))
	receipt := func(i uint64, leaf []byte, o *Opening) Receipt {
		return Receipt{Index: i, Leaf: leaf, Proof: string(f.proof(t, i, f.oldKey, f.wits[0], f.wits[1])), Opening: o}
	}
	good := receipt(13, c13, &o13)
	if _, _, err := good.Verify(f.policy); err != nil {
		t.Fatal(err)
	}
	if l, err := good.Event(); err != nil || l.Source != "vault" {
		t.Fatalf("event %+v, %v", l, err)
	}
	mallory := bytes.Replace(o13.Leaf, []byte("alice"), []byte("mallo"), 1)
	for name, c := range map[string]struct {
		r    Receipt
		want error
	}{
		"forged event":            {receipt(13, c13, &Opening{Salt: o13.Salt, Leaf: mallory}), ErrOpening},
		"another entry's opening": {receipt(13, c13, &o14), ErrOpening},
		"short salt":              {receipt(13, c13, &Opening{Salt: o13.Salt[:31], Leaf: o13.Leaf}), ErrOpening},
		"empty opening":           {receipt(13, c13, &Opening{}), ErrOpening},
		"on an event leaf":        {receipt(3, f.leaves[3], &o13), ErrMalformed},
		"on a raw entry":          {receipt(15, []byte("raw entry 15"), &o13), ErrMalformed},
	} {
		if _, _, err := c.r.Verify(f.policy); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, c.want)
		}
		b, err := json.Marshal(c.r)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseReceipt(b)
		if err == nil {
			_, _, err = r.Verify(f.policy)
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: ParseReceipt and Verify = %v, want %v", name, err, c.want)
		}
	}
	// "opening": null or absent shows no event, and is no error.
	r, err := ParseReceipt([]byte(strings.Replace(string(must(json.Marshal(receipt(14, c14, nil)))), `}`, `,"opening":null}`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Verify(f.policy); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Event(); !errors.Is(err, ErrNoEvent) {
		t.Fatalf("no opening: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// KindOf's fast path says what claimedKind, which reads every member name,
// says: the raw endpoint and the auditor must agree on what a body claims.
func FuzzKindOfAgrees(f *testing.F) {
	_, _, c := testOpening(&testing.T{})
	e, _ := AppendErasureLeaf(nil, Erasure{Received: commitTime, Source: "dpo", Entries: []IndexRange{{1, 2}}, Reason: "r"})
	ev, _, _, _ := AppendEventLeaf(nil, []byte(`{"a":{"v":1}}`), commitTime, "s", "")
	for _, b := range [][]byte{c, e, ev, []byte(`{"event":{"x":"a,\"v\":1}"},"v":1}`), []byte(`{"event":{},"x":"\",\"v\":1}`),
		[]byte(`{"commitment":"x","event":1,"v":2}`), []byte(`{"erasure":{},"commitment":"x","v":2}`), []byte(`{"commitment":"x","\u0065vent":1,"v":2}`)} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, want := KindOf(b), claimedKind(b); k != want {
			t.Fatalf("KindOf(%q) = %v, claimedKind %v", b, k, want)
		}
	})
}
