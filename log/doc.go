// Package log is the Tidemark log server: it takes audit events over HTTP,
// wraps each into a canonical event leaf (see [checkpoint.Leaf]), appends the
// leaves to a Tessera tiled Merkle tree, and serves the tree as C2SP
// tlog-tiles so that witnesses, auditors and Tessera's own tools can check it.
//
// # Life of an event
//
//  1. POST /v1/events with one JSON object, or many as NDJSON. The body is
//     read within a size limit (after gzip, if any) into a buffer that grows
//     as bytes arrive; its events are counted in its bytes and admitted
//     (see Back-pressure) before anything is split or decoded; every event is
//     checked to be I-JSON and canonicalized, and every leaf is built and
//     size-checked before anything is appended: a request is accepted whole
//     or not at all.
//  2. Events that carry an Idempotency-Key header or an "id" member are
//     looked up in the idempotency index (see Parts): a sender's retry gets
//     the first index back instead of a second entry.
//  3. New leaves go to the append queue, which hands them to Tessera's
//     appender; Tessera assigns their indexes. On the POSIX driver the
//     future it returns resolves only once the batch holding the leaf is
//     sequenced and integrated into the tree on disk: an index the server
//     returns is durable.
//  4. Tessera publishes a signed checkpoint covering the new entries within
//     the checkpoint interval (250 ms by default, a second on MySQL),
//     cosigned by the witnesses' quorum, and republishes an unchanged one
//     every few seconds so that its freshness can be observed. The awaiter
//     reads it as the witness round ends, and requests waiting for a
//     receipt (wait=witnessed) get theirs.
//
// # Parts
//
// The server's parts, and the files they live in:
//
//   - The ingest handlers (events.go, add.go, otlp.go, k8s.go, shippers.go)
//     authenticate a request (auth.go), bound it (limit.go) and decode its
//     events. All but /add then share the append path (appendpath.go):
//     admit, build leaves, claim keys, append, resolve.
//   - The idempotency index (idempotency.go) maps a sender's key to the index of
//     its first entry. It keeps its rows in a database (idempotencydb.go: SQLite
//     beside a POSIX log, the log's MySQL database otherwise), is repaired
//     from the leaves after a crash (recovery.go), and finds a leaf's key
//     in the leaf itself (keyhash.go). Comments call it the idempotency
//     index throughout; "the index's database" is where its rows live.
//   - The append queue (appendqueue.go) groups the leaves of concurrent
//     requests and hands each group to Tessera's Add, one group in flight
//     at a time. It assigns no index: Tessera does.
//   - The backend (backend.go, s3.go) is the Tessera driver the tree is
//     kept with: POSIX, MySQL or S3 with MySQL.
//   - Witnessing (witnessing.go, witnessbreaker.go) watches Tessera's
//     requests to witnesses; the awaiter (awaiter.go) follows the published
//     checkpoint for receipts (receipts.go) and ?wait=witnessed.
//   - The search index (search.go, searchindex.go) answers GET /v1/search.
//   - A commitment log (leafmode.go) appends a salted commitment to each
//     event instead of the event (commitments.go), keeps the events and
//     salts in the payload store (payloads.go) and serves them to auditors
//     (payloadshttp.go); erasure (erase.go) and retention (retention.go)
//     delete them again, each recorded by an erasure leaf in the log.
//
// # Writers
//
// Every write is authenticated, and the name it was authenticated under is
// stamped into its leaves as their source: the name of its bearer token (see
// [Tokens]) or, with [Config].ClientCertWriters, the subject common name of the
// verified TLS client certificate of its connection, which wins over a
// token. With neither, writes are open and the source is [OpenSource].
//
// # Reads
//
// GET /checkpoint and /tile/... are served from the data directory exactly as
// C2SP tlog-tiles v0.1.0 lays them out; only canonical paths are served, and
// only files that tlog-tiles names. Entry bundles can be put behind read
// tokens while the checkpoint and hash tiles stay public. A full entry
// bundle never changes, so its gzip is made once and kept beside the data
// (bundleGzips).
//
// # Back-pressure
//
// Tessera's POSIX driver never pushes back: an overloaded appender just
// queues. The server bounds what requests make it hold, each bound checked
// before the memory is taken (limit.go): the body bytes of all requests
// (503), the events of one request, counted in the body's bytes without
// decoding it (413: split the batch), and the events of all requests in
// flight (503 with Retry-After).
//
// # Disk faults
//
// On a full or read-only disk an append fails and is answered 503 with
// Retry-After, saying what of the request was logged; every index already
// answered stays in the log, and the log takes writes again by itself when
// the disk does (storage.go). Tessera v1.0.4 leaves a temporary file behind
// after each failed write; the server removes those (strays.go).
package log
