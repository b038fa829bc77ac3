// Package checkpoint holds the formats that Tidemark's log, witnesses,
// auditors and clients exchange, and the checks on them: checkpoints, their
// signatures and cosignatures, the trust policy, and Merkle proofs. It does
// no I/O.
//
// # Checkpoints
//
// A log commits to its whole history in a checkpoint (C2SP tlog-checkpoint
// v1.0.0): a short text with the log's origin, the number of entries in its
// Merkle tree, and the tree's root hash (RFC 6962, SHA-256) in base64,
// each on its own line, each line ending in a newline:
//
//	audit.example.com/prod
//	10
//	SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=
//
// Optional extension lines may follow; none may be empty. The origin names
// the log uniquely (a schema-less URL prefix by convention); the size is
// decimal without leading zeros; the hash is exactly 32 bytes. [Parse] reads a
// body, [Format] writes one, and they are exact inverses: [Parse] accepts a text
// only if [Format] would produce it byte for byte, so one checkpoint has one
// text and one hash.
//
// # Signed notes and log signatures
//
// A checkpoint travels as a signed note (C2SP signed-note v1.0.0, the format
// of golang.org/x/mod/sumdb/note): the body, a blank line, then one line per
// signature, "— " (U+2014, space), the key's name, a space, and base64 of a
// 4-byte key hash followed by the signature:
//
//	audit.example.com/prod
//	10
//	SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=
//
//	— audit.example.com/prod z6FkJYHgs2mV6zpO6J80kccJHo5RxqMBzZOYOXaHYTjyN64jBWz9kwTW5DRgW8Iov/bGaVtgxFwOAPIkLAbkkDcs9g4=
//
// The log signs with an Ed25519 key (type 0x01) whose name is its origin, so
// a verifier knows which checkpoints a key may sign. Keys are text: the
// public key (vkey) of the example is
//
//	audit.example.com/prod+cfa16425+AfAbCR/YOt2q++hVLONLaVZdTzNJoTjM4QyW8zRA8fGx
//
// its name, the key hash in 8 lowercase hex digits (the first 4 bytes of
// SHA-256 of the name, a newline, the type byte and the public key), and the
// type byte and key in base64. [GenerateLogKey] makes a pair, [NewLogSigner] and
// [NewLogVerifier] load them. [Sign] signs a [Checkpoint]; [Open] verifies one
// against the log's keys and parses it, ignoring signatures by other keys, as
// signed-note requires.
//
// # Cosignatures
//
// A log could show different histories to different people. Witnesses stop
// that: a witness cosigns a checkpoint only after checking that it extends,
// by a consistency proof, the last checkpoint it cosigned for that origin,
// so two inconsistent checkpoints never both gather a quorum of honest
// witnesses. A cosignature (C2SP tlog-cosignature v1.0.1, cosignature/v1) is
// one more signature line, by a key of type 0x04, whose bytes are an 8-byte
// big-endian Unix time and an Ed25519 signature over
//
//	cosignature/v1
//	time 1767225600
//	audit.example.com/prod
//	10
//	SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=
//
// The checkpoint above, cosigned at that time by the witness with vkey
// witness.example.org/w1+199e672a+BAbg4LvQPpM2FY+CAYcLjdT3bM5TS45ro9BnC2ri05DU,
// gains the line
//
//	— witness.example.org/w1 GZ5nKgAAAABpVbkAESaYxJNoEEBu0dGI6e7LJwkoK+0Ye+VV68Da3cl+BcOVAJh7Jd7yoSUw8TBWqaHP0ujdGVbJLOeoJjPH/AdLDg==
//
// [GenerateWitnessKey], [NewWitnessSigner] and [NewWitnessVerifier] handle witness
// keys; [Cosignatures] reports which witnesses validly cosigned, and when. The
// timestamp is what a receipt proves about time: the entries existed before
// it.
//
// # Policies
//
// A policy (the tlog-policy grammar of the C2SP repository, after Sigsum's)
// is everything a verifier trusts, in one file:
//
//	# Tidemark production audit log
//	log audit.example.com/prod+cfa16425+AfAbCR/YOt2q++hVLONLaVZdTzNJoTjM4QyW8zRA8fGx https://audit.example.com/prod
//	witness w1 witness.example.org/w1+199e672a+BAbg4LvQPpM2FY+CAYcLjdT3bM5TS45ro9BnC2ri05DU https://witness.example.org
//	witness w2 ...
//	witness w3 ...
//	group g 2 w1 w2 w3
//	quorum g
//
// The lines are
//
//	log VKEY [URL]                 a key of the log (type 0x01); the key's name is the origin
//	witness NAME VKEY [URL]        a witness, its cosignature/v1 key (type 0x04)
//	group NAME K|any|all MEMBER... met when K of its members are ("any" is 1, "all" all)
//	quorum NAME|none               the witness or group that must be met; none: no witness needed
//
// Fields are separated by spaces or tabs; "#" starts a comment to the end of
// the line; blank lines are ignored. [ParsePolicy] is strict where other
// parsers (Tessera's among them) are lenient, so that what a policy means is
// decided here, once: each name is defined once and before it is used, and is
// not "none"; no public key appears twice, nor a member twice in a group;
// 1 <= K <= the number of members; there is exactly one quorum line and at
// least one log line; URLs are absolute http or https. A policy is for one
// log: several log lines must share the origin (they are old and new keys
// during a rotation), and log lines for two origins are refused; write one
// policy per log.
//
// A group's members are witnesses or groups, so groups nest:
// "group eu 2 a b c", "group us 1 d e", "group all-regions all eu us". When
// half of the witnesses or fewer can meet the quorum (k-of-n with 2k <= n),
// two disjoint sets of them could cosign two forks of the log:
// [Policy.DisjointQuorums] says when that can happen, and the log warns.
//
// [Policy.Verify] is the whole check of a checkpoint: signed by one of the log's
// keys, and cosigned by a quorum of witnesses.
//
// # Receipts and proofs
//
// A receipt proves that an entry is in the log. It is a C2SP tlog-proof@v1
// (c2sp.org/tlog-proof@v1, from the spec repository's main branch): the line
// "c2sp.org/tlog-proof@v1", an optional "extra <base64>" line, "index N",
// the inclusion proof (the hashes from the leaf's sibling to the root, one
// base64 line each), an empty line, and the signed checkpoint with its
// cosignatures, verbatim:
//
//	c2sp.org/tlog-proof@v1
//	index 3
//	<base64 hash>
//	<base64 hash>
//	<base64 hash>
//	<base64 hash>
//
//	audit.example.com/prod
//	10
//	SBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=
//
//	— audit.example.com/prod z6Fk...
//	— witness.example.org/w1 GZ5n...
//
// Tidemark hands it out with the leaf itself. Checking one offline takes
// only the policy: [Policy.Verify] on the checkpoint, then [VerifyInclusion] of
// the leaf at the index against the checkpoint it returned. Between two
// checkpoints of one log, [VerifyConsistency] checks that the newer extends the
// older; it is what a witness checks before it cosigns.
//
// The package's tests check it against vectors made by other
// implementations, in testdata: signed checkpoints cosigned by
// filippo.io/torchwood, tlog-proof texts, and inclusion and consistency
// proofs by golang.org/x/mod/sumdb/tlog (testdata/README.md says how).
//
// # Errors
//
// Errors start with "checkpoint: " and wrap a sentinel when a caller must
// tell outcomes apart: [ErrMalformed] for input that does not parse,
// [ErrUnverified] for a well-formed checkpoint without a trusted signature
// (or with an invalid one by a trusted key), [ErrQuorum] when the witnesses
// fall short, [ErrProof] when a proof does not verify.
package checkpoint
