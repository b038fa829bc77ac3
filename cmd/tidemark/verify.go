package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
)

func runVerify(args []string) error {
	fs := newFlags("verify", "--policy FILE RECEIPT",
		"Checks a receipt offline, with nothing but the policy: the checkpoint's signature by one of the log's keys\n"+
			"(old keys of a rotation included, as the policy lists them), a quorum of witness cosignatures, no\n"+
			"signature the policy cannot check, and the inclusion proof of the entry's leaf. RECEIPT is a JSON receipt\n"+
			"as the log serves it ({\"index\":N,\"leaf\":\"<base64>\",\"proof\":\"<tlog-proof>\"}; `tidemark submit --wait`\n"+
			"prints them), or a C2SP tlog-proof@v1 file (.tlog-proof) with the leaf in --leaf FILE; \"-\" reads stdin.\n"+
			"Exit status 0: verified; 1: refused, and it says what failed.")
	policyFile := fs.String("policy", "", "the trust policy of the log (required)")
	leafFile := fs.String("leaf", "", "the entry's leaf, byte for byte, when RECEIPT is a bare .tlog-proof file")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *policyFile == "" {
		return usageError{"--policy FILE is required: a receipt means nothing without the keys and quorum you trust"}
	}
	if len(pos) != 1 {
		return usageError{"give one RECEIPT file (or - for stdin)"}
	}
	policyText, err := readLimited(*policyFile, checkpoint.MaxPolicySize)
	if err != nil {
		return err
	}
	receipt, err := readLimited(pos[0], 2*(checkpoint.MaxProofSize+checkpoint.MaxLeafSize))
	if err != nil {
		return err
	}
	var leaf []byte
	if *leafFile != "" {
		if leaf, err = readLimited(*leafFile, checkpoint.MaxLeafSize); err != nil {
			return err
		}
	}
	v, err := verifyReceipt(policyText, receipt, leaf)
	if err != nil {
		return err
	}
	fmt.Print(describeVerified(v))
	return nil
}

// verifyReceipt is `tidemark verify`: it reads a policy and a receipt (JSON,
// or a tlog-proof text with its leaf) and checks them with client.Verify.
func verifyReceipt(policyText, receipt, leaf []byte) (*client.Verified, error) {
	p, err := checkpoint.ParsePolicy(policyText)
	if err != nil {
		return nil, fmt.Errorf("the policy: %w", err)
	}
	var r checkpoint.Receipt
	trimmed := bytes.TrimLeft(receipt, " \t\r\n")
	switch {
	case bytes.HasPrefix(trimmed, []byte("{")):
		if leaf != nil {
			return nil, usageError{"--leaf is for a bare .tlog-proof file: a JSON receipt carries its leaf"}
		}
		if r, err = checkpoint.ParseReceipt(receipt); err != nil {
			return nil, fmt.Errorf("RECEIPT REFUSED: %w", err)
		}
	case bytes.HasPrefix(receipt, []byte(checkpoint.ProofHeader+"\n")):
		if leaf == nil {
			return nil, usageError{"a .tlog-proof file proves a leaf it does not contain: give the leaf with --leaf FILE"}
		}
		pr, err := checkpoint.ParseProof(receipt)
		if err != nil {
			return nil, fmt.Errorf("RECEIPT REFUSED: %w", err)
		}
		r = checkpoint.Receipt{Index: pr.Index, Leaf: leaf, Proof: string(receipt)}
	default:
		return nil, errors.New("RECEIPT REFUSED: neither a JSON receipt nor a tlog-proof (first line c2sp.org/tlog-proof@v1)")
	}
	v, err := client.Verify(p, &r)
	if err != nil {
		return nil, fmt.Errorf("RECEIPT REFUSED: %w", err)
	}
	return v, nil
}

// describeVerified says what a verified receipt proves.
func describeVerified(v *client.Verified) string {
	var b strings.Builder
	fmt.Fprintf(&b, "OK: entry %d is in the log %s\n", v.Index, v.Checkpoint.Origin)
	fmt.Fprintf(&b, "  checkpoint: size %d, root %x\n", v.Checkpoint.Size, v.Checkpoint.Hash)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range v.Cosigners {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) == 0 {
		b.WriteString("  cosigned by: no witness (the policy's quorum is none)\n")
	} else {
		for _, n := range names {
			fmt.Fprintf(&b, "  cosigned by: %s at %s\n", n, v.Cosigners[n].Format(time.RFC3339))
		}
		// Not the earliest cosignature: one witness with a slow clock
		// would set it. The time by which a quorum had cosigned.
		if !v.ExistedBy.IsZero() {
			fmt.Fprintf(&b, "  so the entry existed by %s (when a quorum of the witnesses had cosigned)\n", v.ExistedBy.Format(time.RFC3339))
		}
	}
	switch {
	case v.Leaf != nil && v.Committed != nil:
		fmt.Fprintf(&b, "  the entry commits to this event, which the receipt's opening shows (the log may since have erased it):\n")
		fmt.Fprintf(&b, "  received %s from %q: %s\n", v.Leaf.Received.Format(time.RFC3339Nano), v.Leaf.Source, v.Leaf.Event)
	case v.Leaf != nil:
		fmt.Fprintf(&b, "  received %s from %q: %s\n", v.Leaf.Received.Format(time.RFC3339Nano), v.Leaf.Source, v.Leaf.Event)
	case v.Committed != nil:
		fmt.Fprintf(&b, "  received %s from %q: an event committed to as %x; the receipt has no opening, so its content is not shown\n",
			v.Committed.Received.Format(time.RFC3339Nano), v.Committed.Source, v.Committed.Commitment)
	}
	return b.String()
}

// loadPolicy reads and parses a policy file; "" gives nil.
func loadPolicy(path string) (*checkpoint.Policy, []byte, error) {
	if path == "" {
		return nil, nil, nil
	}
	b, err := readLimited(path, checkpoint.MaxPolicySize)
	if err != nil {
		return nil, nil, err
	}
	p, err := checkpoint.ParsePolicy(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, b, nil
}

// readLimited reads a file ("-": stdin) of at most limit bytes.
func readLimited(path string, limit int) ([]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("couldn't read %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
