// Package search is the log's search index: a table of who did what to
// which resource, with what outcome, for every event leaf, and a full-text
// index over the events' string values, so that "who read prod secrets
// last Tuesday?" is one query instead of a replay of the tree.
//
// The index is derived, never trusted. An [Indexer] builds it from the log
// itself, reading entry bundles in order the way an auditor would, a
// chunk at a time and asynchronously, so that ingest never waits for it;
// [Store.Reset] throws it away and the indexer builds it again from the
// first entry (tidemark reindex). A query ([Query]) finds candidate
// indexes in the table, and the log answers with the leaves read back from
// its own entry bundles: a hit whose leaf does not match the query (an
// index damaged or edited by hand) is dropped, and every hit can be proven
// with a receipt of its index.
//
// [Fields] come from the shapes events really have ([Extract]): Tidemark's
// own (actor, action, resource, outcome), Kubernetes audit events
// (user.username, verb, objectRef, responseStatus), OpenTelemetry log
// records (attributes), Elastic Common Schema records as log shippers
// send them (user.name, event.action, event.outcome) and CloudTrail
// records (userIdentity, eventName, errorCode). A [Mapping] adds JSON
// pointers for other shapes.
//
// The index lives in SQLite beside a POSIX log (its own file, so that it
// never competes with the idempotency index for SQLite's one writer) and
// in tables of the log's database on MySQL. Its progress, the tree size up
// to which it is complete, moves in the same transaction as the rows it
// covers, by compare-and-swap: any number of frontends, or a reset, may
// race, and the index is never marked complete over rows it lacks.
package search
