// Package auditor verifies a Tidemark log from the outside, trusting nothing
// but a policy file (checkpoint.ParsePolicy): the log's keys and URL, the
// witnesses' keys and URLs, and the quorum. It is what an external auditor,
// a security team or a regulator runs against a log it does not control;
// `tidemark audit` is a thin wrapper around it. It meets the log and the
// witnesses only over HTTP (C2SP tlog-tiles and the witness's GET endpoint).
//
// # What a check proves
//
// A log is trustworthy if everyone sees the same append-only history. A
// checkpoint (origin, tree size, root hash, signed by the log) commits to
// one history. The auditor holds the log to it in four ways:
//
//   - Signatures: the log's checkpoint must be signed by one of the policy's
//     log keys and cosigned by a quorum of its witnesses
//     (checkpoint.Policy.Verify). Witnesses cosign only checkpoints that
//     extend what they cosigned before, so a witnessed checkpoint is one
//     the log cannot later contradict without honest witnesses noticing.
//   - Memory: the auditor keeps the last checkpoint it accepted in its state
//     directory. Every later one must be at least as big and must extend it,
//     by a consistency proof the auditor builds itself from the log's hash
//     tiles (Tessera's client.ProofBuilder). A smaller tree is a rollback; a
//     tree that does not extend the accepted one is a fork. This holds
//     across restarts: the state is written atomically before it is relied
//     on.
//   - Gossip: each witness serves the latest checkpoint it cosigned
//     (GET <witness>/<hex SHA-256 of origin>/checkpoint). A log showing the
//     auditor one history and the witnesses another is caught by comparing
//     them, at equal sizes by root and across sizes by a consistency proof.
//   - Replay (Full): every entry bundle is downloaded, every leaf hashed
//     (RFC 6962: SHA-256 of 0x00 and the leaf), the tree rebuilt in a
//     compact range (a few hashes, whatever the size), and its root compared
//     with the witnessed checkpoint's; every hash tile is compared with the
//     hashes the leaves give. Each leaf is also classified: a canonical
//     event leaf (checkpoint.ParseLeaf), commitment leaf or erasure leaf, a
//     raw entry, or bad: one that claims to be a leaf the log writes
//     (checkpoint.KindOf) without being one it would write, or an erasure
//     of entries at or after its own index.
//   - Contents (Full, commitment-mode logs): every event the log serves for
//     a commitment leaf must open it (checkpoint.Opening.Verify); one it no
//     longer serves must be covered by an erasure leaf of the tree; one an
//     erasure leaf covers must no longer be served (see payloads.go).
//
// # Export
//
// A [Sink] (Config.Sink) receives the leaves a full check verified, in
// index order, only once the recomputed root matched the witnessed
// checkpoint's: they are spooled to a file until then (see verified.go).
// [Exporter] is the Sink behind `tidemark audit --export`: NDJSON records,
// each with the checkpoint it was verified against, to a file or stdout,
// or in bounded batches to Splunk HEC or the Elasticsearch bulk API (see
// export.go).
//
// # Freshness
//
// A log that stops, or shows an auditor an old checkpoint, still answers
// every poll. The log re-publishes its checkpoint every few seconds and the
// witnesses date their cosignatures, so the auditor judges freshness from
// the newest time a quorum of witnesses vouches for (the latest t such that
// the witnesses that cosigned at or after t meet the quorum), allowing
// [Config].ClockSkew for clocks ahead and ignoring cosignatures dated beyond
// it. Older than [Config].MaxAge is stale.
//
// # Evidence
//
// Most failures convince only the auditor: a bad tile or a rollback could be
// a broken mirror. Two checkpoints signed by the log's own key that cannot
// both be true convince anyone with the log's public key. The auditor writes
// those down as [Evidence], a JSON file with both signed checkpoints verbatim
// and, across sizes, the consistency proof (built from the log's tiles) and
// the root R' of the smaller size that the proof leads from:
//
//	{"origin": "audit.example.com/prod", "kind": "inconsistent-proof",
//	 "checkpoints": ["audit.example.com/prod\n1000\n...", "audit.example.com/prod\n1300\n..."],
//	 "proof": ["...", ...], "proof_old_root": "...", "explanation": "..."}
//
// If the proof leads from R' (not the first checkpoint's root R) to the
// second checkpoint's root, the log's tree of 1300 leaves begins with a
// tree of 1000 leaves other than the one it signed: proof.VerifyConsistency
// recomputes the new root from R' and the proof, so the proof cannot be made
// to fit without the log's tree really containing R'. [CheckEvidence] re-checks
// a file with the policy alone (the witness's /evidence items have the same
// fields and re-check too).
//
// # Findings, alerts and exit statuses
//
// A check returns a [Report] of Findings. Misbehaviour (split view, rollback,
// bad signature, quorum lost, stale, bad tiles, root mismatch, bad leaf, bad
// opening, missing payload, erased content served) makes [Report.ExitCode]
// 1; a log that could not be read or checked, 2; otherwise 0. [Rule]
// matches ([ParseRules]: conditions over the fields of event leaves and of
// opened events) and notes about witnesses are reported without changing it. An
// [Alerter] sends findings to a webhook from a bounded queue with retries, so
// alerting never holds up verification; Follow reports each distinct
// problem once, not once per round.
//
// # Performance
//
// Full fetches bundles with [Config].Workers goroutines that also hash,
// classify and check their bundle's level-0 tile (16 by default); one goroutine merges their
// compact ranges in order. At most two bundles per worker are in memory.
// [Progress] (the compact range and counters) is saved every few seconds, so
// an interrupted run resumes, and a run after the log grew checks only the
// new leaves. ParseLeaf costs about 6 µs a leaf, more than the rest of the
// work together; a fast path accepts the common canonical leaves in well
// under a microsecond and leaves everything else to ParseLeaf
// (FuzzFastEventLeaf checks that it never accepts what ParseLeaf refuses).
// Over gzip (a log's entry bundles as served off loopback), inflating is
// the biggest cost, then SHA-256, then the fast path: bundles are inflated
// with klauspost/compress, in about two thirds of compress/gzip's time.
package auditor
