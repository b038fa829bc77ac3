// Package log is the Tidemark log server: it takes audit events over HTTP,
// wraps each into a canonical event leaf (see checkpoint.Leaf), appends the
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
//     looked up in the idempotency index (dedup.go): a sender's retry gets
//     the first index back instead of a second entry.
//  3. New leaves go to Tessera's appender. On the POSIX driver the future it
//     returns resolves only once the batch holding the leaf is sequenced and
//     integrated into the tree on disk: an index the server returns is durable.
//  4. Tessera publishes a signed checkpoint covering the new entries within
//     the checkpoint interval (a second by default), and republishes an
//     unchanged one every few seconds so that its freshness can be observed.
//
// # Writers
//
// Every write is authenticated, and the name it was authenticated under is
// stamped into its leaves as their source: the name of its bearer token (see
// Tokens) or, with Config.ClientCertWriters, the subject common name of the
// verified TLS client certificate of its connection, which wins over a
// token. With neither, writes are open and the source is OpenSource.
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
