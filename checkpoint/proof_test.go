package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// newTestTree returns a 10-leaf RFC 6962 tree and its leaves.
func newTestTree(t *testing.T) (*testonly.Tree, [][]byte) {
	t.Helper()
	tree := testonly.New(rfc6962.DefaultHasher)
	var leaves [][]byte
	for i := range 10 {
		l := []byte(fmt.Sprintf(`{"v":1,"event":{"id":"%d"}}`, i))
		leaves = append(leaves, l)
		tree.AppendData(l)
	}
	return tree, leaves
}

func treeCheckpoint(tree *testonly.Tree, size uint64) Checkpoint {
	return Checkpoint{Origin: "audit.example.com/prod", Size: size, Hash: tree.HashAt(size)}
}

func TestLeafHashAndRoot(t *testing.T) {
	// Computed from RFC 6962 by hand: leaf hashes are SHA-256(0x00 || leaf),
	// interior nodes SHA-256(0x01 || left || right), and a tree of 3 is
	// (0, 1) then 2.
	h := func(b ...[]byte) []byte {
		s := sha256.Sum256(bytes.Join(b, nil))
		return s[:]
	}
	l := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	var lh [][]byte
	for _, x := range l {
		lh = append(lh, h([]byte{0}, x))
	}
	if !bytes.Equal(LeafHash(l[0]), lh[0]) {
		t.Errorf("LeafHash = %x, want %x", LeafHash(l[0]), lh[0])
	}
	root := h([]byte{1}, h([]byte{1}, lh[0], lh[1]), lh[2])
	c := Checkpoint{Size: 3, Hash: root}
	// Leaf 2's proof is the hash of (0, 1); leaf 0's is leaf 1, then leaf 2.
	if err := VerifyInclusion(l[2], 2, [][]byte{h([]byte{1}, lh[0], lh[1])}, c); err != nil {
		t.Errorf("leaf 2: %v", err)
	}
	if err := VerifyInclusion(l[0], 0, [][]byte{lh[1], lh[2]}, c); err != nil {
		t.Errorf("leaf 0: %v", err)
	}
	// From size 2 to 3 the proof is leaf 2 alone.
	if err := VerifyConsistency(2, h([]byte{1}, lh[0], lh[1]), [][]byte{lh[2]}, c); err != nil {
		t.Errorf("consistency 2 to 3: %v", err)
	}
}

func TestVerifyInclusion(t *testing.T) {
	tree, leaves := newTestTree(t)
	for size := uint64(1); size <= 10; size++ {
		c := treeCheckpoint(tree, size)
		for i := uint64(0); i < size; i++ {
			p, err := tree.InclusionProof(i, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(leaves[i], i, p, c); err != nil {
				t.Errorf("size %d index %d: %v", size, i, err)
				continue
			}
			bad := func(what string, leaf []byte, index uint64, proof [][]byte, c Checkpoint) {
				t.Helper()
				err := VerifyInclusion(leaf, index, proof, c)
				if err == nil {
					t.Errorf("size %d index %d: %s verifies", size, i, what)
				}
			}
			bad("another leaf", leaves[(i+1)%10], i, p, c)
			bad("the leaf hash as the leaf", LeafHash(leaves[i]), i, p, c)
			bad("index beyond size", leaves[i], size, p, c)
			if size > 1 {
				bad("another index", leaves[i], (i+1)%size, p, c)
				bad("a truncated proof", leaves[i], i, p[:len(p)-1], c)
				for j := range p {
					q := clone2(p)
					q[j][0] ^= 1
					bad(fmt.Sprintf("proof hash %d changed", j), leaves[i], i, q, c)
					q = clone2(p)
					q[j] = q[j][:31]
					bad(fmt.Sprintf("proof hash %d short", j), leaves[i], i, q, c)
				}
			}
			bad("an extra hash", leaves[i], i, append(clone2(p), make([]byte, 32)), c)
			if size < 10 {
				bad("a larger tree", leaves[i], i, p, treeCheckpoint(tree, size+1))
			}
			c2 := c
			c2.Hash = c.Hash[:31]
			if err := VerifyInclusion(leaves[i], i, p, c2); err == nil || errors.Is(err, ErrProof) {
				t.Errorf("a short root hash: %v", err)
			}
		}
	}
	c := treeCheckpoint(tree, 10)
	if err := VerifyInclusion(leaves[0], 0, nil, Checkpoint{Size: 0, Hash: rfc6962.DefaultHasher.EmptyRoot()}); !errors.Is(err, ErrProof) {
		t.Errorf("inclusion in the empty tree: %v", err)
	}
	p, _ := tree.InclusionProof(3, 10)
	if err := VerifyInclusion(leaves[4], 3, p, c); !errors.Is(err, ErrProof) || err.Error() != "checkpoint: inclusion proof of index 3 in tree size 10: the proof leads to another root hash" {
		t.Errorf("error %q", err)
	}
}

func TestVerifyConsistency(t *testing.T) {
	tree, _ := newTestTree(t)
	empty := rfc6962.DefaultHasher.EmptyRoot()
	for n := uint64(0); n <= 10; n++ {
		c := treeCheckpoint(tree, n)
		for m := uint64(0); m <= n; m++ {
			p, err := tree.ConsistencyProof(m, n)
			if err != nil {
				t.Fatal(err)
			}
			old := tree.HashAt(m)
			if err := VerifyConsistency(m, old, p, c); err != nil {
				t.Errorf("%d to %d: %v", m, n, err)
				continue
			}
			bad := func(what string, m uint64, old []byte, p [][]byte, c Checkpoint) {
				t.Helper()
				if err := VerifyConsistency(m, old, p, c); err == nil {
					t.Errorf("%d to %d: %s verifies", m, n, what)
				}
			}
			wrong := bytes.Clone(old)
			wrong[0] ^= 1
			bad("another old root", m, wrong, p, c)
			newWrong := c
			newWrong.Hash = bytes.Clone(c.Hash)
			newWrong.Hash[31] ^= 1
			if m > 0 || n == 0 {
				// From the empty tree every tree is consistent: nothing
				// binds the new root.
				bad("another new root", m, old, p, newWrong)
			}
			bad("an extra hash", m, old, append(clone2(p), make([]byte, 32)), c)
			for j := range p {
				q := clone2(p)
				q[j][5] ^= 0x80
				bad(fmt.Sprintf("proof hash %d changed", j), m, old, q, c)
			}
			if len(p) > 0 {
				bad("a truncated proof", m, old, p[:len(p)-1], c)
			}
			if m > 0 && m < n {
				bad("sizes swapped", n, c.Hash, p, treeCheckpoint(tree, m))
				bad("another old size", m-1, old, p, c)
			}
		}
		// From the empty tree: a nil root or the empty tree's hash.
		if err := VerifyConsistency(0, nil, nil, c); err != nil {
			t.Errorf("0 (nil root) to %d: %v", n, err)
		}
		if err := VerifyConsistency(0, empty, nil, c); err != nil {
			t.Errorf("0 to %d: %v", n, err)
		}
		if err := VerifyConsistency(0, tree.HashAt(1), nil, c); !errors.Is(err, ErrProof) {
			t.Errorf("0 with a non-empty root to %d: %v", n, err)
		}
	}
	if err := VerifyConsistency(3, tree.HashAt(3)[:16], nil, treeCheckpoint(tree, 3)); err == nil {
		t.Error("a short old root verifies")
	}
}

func clone2(p [][]byte) [][]byte {
	q := make([][]byte, len(p))
	for i := range p {
		q[i] = bytes.Clone(p[i])
	}
	return q
}
