package checkpoint

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// ErrProof is wrapped by the errors VerifyInclusion and VerifyConsistency
// return when a proof does not verify. A bad proof says nothing about the log
// on its own: anyone can make one up.
var ErrProof = errors.New("checkpoint: proof does not verify")

// LeafHash returns the RFC 6962 hash of a leaf: SHA-256(0x00 || leaf).
func LeafHash(leaf []byte) []byte {
	return rfc6962.DefaultHasher.HashLeaf(leaf)
}

// VerifyInclusion checks that leaf is the entry at index in the tree that c
// describes, given the inclusion proof: the hashes from the leaf's sibling up
// to the root, as in tlog-proof and RFC 6962 (the hashes a log returns for
// an inclusion proof).
func VerifyInclusion(leaf []byte, index uint64, proofHashes [][]byte, c Checkpoint) error {
	if err := checkProofHashes(c.Hash, proofHashes); err != nil {
		return err
	}
	if index >= c.Size {
		return &sentinelError{ErrProof, fmt.Sprintf("index %d is not in a tree of size %d", index, c.Size)}
	}
	err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, c.Size, LeafHash(leaf), proofHashes, c.Hash)
	if err != nil {
		return &sentinelError{ErrProof, fmt.Sprintf("inclusion proof of index %d in tree size %d: %s", index, c.Size, proofMessage(err))}
	}
	return nil
}

// VerifyConsistency checks that the tree of oldSize entries with root hash
// oldRoot is a prefix of the tree that c describes, given the consistency
// proof. Sizes must not decrease; for equal sizes the proof is empty and the
// roots must be equal. For oldSize 0 the proof is empty and oldRoot is nil or
// the empty tree's hash, SHA-256 of nothing; every tree extends the empty
// tree, so that check says nothing about c.Hash.
func VerifyConsistency(oldSize uint64, oldRoot []byte, proofHashes [][]byte, c Checkpoint) error {
	if err := checkProofHashes(c.Hash, proofHashes); err != nil {
		return err
	}
	empty := rfc6962.DefaultHasher.EmptyRoot()
	if oldSize == 0 && oldRoot == nil {
		oldRoot = empty
	}
	if len(oldRoot) != HashSize {
		return fmt.Errorf("checkpoint: old root hash is %d bytes, want %d", len(oldRoot), HashSize)
	}
	if oldSize == 0 && !bytes.Equal(oldRoot, empty) {
		return &sentinelError{ErrProof, "old tree has size 0 but not the empty tree's root hash"}
	}
	if oldSize > c.Size {
		return &sentinelError{ErrProof, fmt.Sprintf("old tree size %d is larger than new tree size %d", oldSize, c.Size)}
	}
	err := proof.VerifyConsistency(rfc6962.DefaultHasher, oldSize, c.Size, proofHashes, oldRoot, c.Hash)
	if err != nil {
		return &sentinelError{ErrProof, fmt.Sprintf("consistency proof from tree size %d to %d: %s", oldSize, c.Size, proofMessage(err))}
	}
	return nil
}

// checkProofHashes checks the hash sizes that the merkle library leaves
// unchecked (it checks the number of hashes).
func checkProofHashes(root []byte, hashes [][]byte) error {
	if len(root) != HashSize {
		return fmt.Errorf("checkpoint: root hash is %d bytes, want %d", len(root), HashSize)
	}
	for i, h := range hashes {
		if len(h) != HashSize {
			return &sentinelError{ErrProof, fmt.Sprintf("proof hash %d is %d bytes, want %d", i+1, len(h), HashSize)}
		}
	}
	return nil
}

// proofMessage replaces the merkle library's root mismatch message, which
// prints both hashes as byte lists over three lines.
func proofMessage(err error) string {
	if _, ok := errors.AsType[proof.RootMismatchError](err); ok {
		return "the proof leads to another root hash"
	}
	return err.Error()
}
