// Package witness is Tidemark's witness: an HTTP server, run by someone
// other than the log operator, that cosigns a log's checkpoint only after
// checking that it extends the last checkpoint it cosigned for that log. Its
// whole value is one promise: it never cosigns two inconsistent views of a
// log, whatever the log, a crash or an attacker does.
//
// # The protocol
//
// A log (or anyone) POSTs to /add-checkpoint, as C2SP tlog-witness v1.0.0
// specifies, the size of the checkpoint it believes the witness last
// cosigned, a consistency proof from there, an empty line and the new signed
// checkpoint:
//
//	old 10
//	2Ll8nNtBX2wDDS6TGK0gjTAt1eYB3m0gNRhIrwcq/xM=
//	dRDNHrkCzlmSfEeE0y3OCDLA7tQf8sXGQyO5TJ4TY+c=
//
//	audit.example.com/prod
//	14
//	J0sT9Htc5zE5GqXGAR8swwjZNcxwvLmTjf6SKMrzpZI=
//
//	— audit.example.com/prod z6FkJ...
//
// The witness answers, checking in this order:
//
//	404  the origin is not in its log lists
//	403  no valid signature by a key it trusts for the origin
//	400  old is larger than the checkpoint's size (or the body is malformed)
//	409  old is not the size it last cosigned (0 if never): the body is that
//	     size and a newline, Content-Type text/x.tlog.size, so the client
//	     can retry with the right proof
//	409  old equals the checkpoint's size but the root differs from the one
//	     cosigned
//	422  the consistency proof does not verify (it must be empty from 0)
//	429  the log or the witness is over its rate limit
//	200  its cosignature line(s), "— <name> <base64>\n", a C2SP
//	     tlog-cosignature v1.0.1 (cosignature/v1, an 8-byte timestamp and
//	     an Ed25519 signature over "cosignature/v1\ntime <t>\n<body>")
//
// A log the witness never cosigned has size 0 for it, and every tree
// extends the empty one: the first checkpoint needs no proof. That is not
// trust on first use of anything but the log's key, which comes from the
// operator's lists.
//
// The log's signature is checked as crypto/ed25519 checks it (RFC 8032's
// cofactorless equation, S below the group order), with each listed key's
// point decompressed once rather than on every request (verify.go); a
// checkpoint that fast path does not accept goes through checkpoint.Open and
// note.Open, which decide and word the 403. Nothing is accepted that those
// libraries would refuse.
//
// A request for exactly the checkpoint already cosigned (old equals its size
// and the body is the same) is a repeat, as Tessera sends when it
// republishes: it gets a fresh cosignature, timestamped now, answered from
// memory with nothing written and no rate limit charged.
//
// # State and durability
//
// Per origin the witness keeps the last checkpoint it cosigned: the size,
// the root, the body, the log's verified signature lines and its own
// cosignature line. Nothing else a requester sent is kept: signature lines by
// unknown keys are dropped before anything is stored, so they never come back
// out of GET /<hex SHA-256 of origin>/checkpoint.
//
// The state is SQLite (witness.db, WAL, synchronous=FULL: a commit has
// reached the disk when it returns), with a copy in memory that requests
// read. An advancing request holds its origin's lock from the check to the
// answer: it checks against the stored checkpoint, signs, then writes with
// one compare-and-swap,
//
//	UPDATE checkpoints SET ... WHERE origin = ? AND size = <checked size> AND root = <checked root>
//
// (an INSERT for a first checkpoint) and answers only after that commit.
// So the check and the write are atomic, a cosignature never leaves before
// the state that implies it is on disk, and after a crash the witness
// remembers at least everything it answered. The lock keeps two racing
// requests from both succeeding from the same state; the compare-and-swap is
// the last line, should anything else ever write.
//
// Writes go through one goroutine that takes every write waiting at the time
// into one transaction: group commit. Under load many requests share one
// fsync, and each is still answered only once its own transaction is durable.
// While requests that passed their checks are still signing, the writer waits
// for their writes too, for at most half a millisecond, so that a fast disk
// does not leave each write to pay for a transaction of its own. An idle
// witness commits each write at once, without waiting for company.
//
// # Identity
//
// A witness is its key and its state together. On the first start it
// creates witness.key (and witness.pub) and witness.db in the data
// directory and records its verifier key in the database. Later it refuses a
// key without state (a witness that forgot what it cosigned could cosign a
// fork) unless told Init, a state without its key, and a state made for
// another key. A zero-length witness.db with no non-empty WAL beside it (a
// first start that died before its first commit) is no state. [New] checks
// the log lists, the key and the state before it creates either, so a start
// it refuses leaves the directory as it was. A lock file keeps a second
// process off the same state.
//
// # Which logs
//
// Logs that push come from a witness-network log list (logs/v0: vkey,
// origin, qpd, contact). Several keys may name one origin, for a key
// rotation. Logs the witness polls itself come from "log VKEY URL" lines:
// it fetches URL/checkpoint and, when it is ahead, builds the consistency
// proof from the log's tiles (Tessera's client.ProofBuilder) and goes
// through the same path. Reload reads both lists again; it never resets
// state.
//
// Each log may make qpd advancing requests a day, with a burst of a minute's
// worth (at least 10), and the witness as a whole a configured number a
// second. Only requests that would advance state are charged.
//
// # Evidence
//
// Most failed requests prove nothing about the log: anyone can send a bad
// proof. The witness keeps, as evidence, only what proves to a stranger who
// has the log's public key that the log signed two views of its history
// that cannot both be true:
//
//   - split view: two checkpoints for one origin and one size with
//     different roots, both validly signed by the log's key (the one the
//     witness cosigned, and one sent to it);
//   - inconsistent proof: the checkpoint the witness cosigned (size m, root
//     R), a newer checkpoint signed by the log (size n, root N), and a
//     consistency proof that reproduces N from a root R' != R for the first
//     m entries. The proof binds R' to N through SHA-256, and the log signed
//     both N and R, so nobody without the log's key can make this up. The
//     proof determines R' only when m is not a power of two; otherwise a
//     failing proof is just a failing proof.
//
// [Evidence] is logged at error level, counted in metrics, stored in the
// state database (at most MaxEvidence items per log, deduplicated) and
// served as JSON on GET /evidence. Items carry the signed checkpoints with
// the log's signature lines only.
package witness
