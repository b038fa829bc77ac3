// Package report writes the evidence a compliance auditor takes away about
// a Tidemark log over a period: `tidemark report`.
//
// Run verifies the log in full with package auditor (auditor.Full: the
// checkpoint's signature and witness quorum, gossip with the witnesses,
// every entry re-hashed into the tree and checked against the witnessed
// root and the hash tiles), and, through auditor.Config.OnLeaf, reads every
// leaf the check reads: the report's figures come from the very leaves
// that were verified, fetched once, by the auditor's own code. From them it
// counts the entries received in the period ([From, To), by the log's
// received time) by source, and the events by action and outcome (with
// the search package's extraction of common event shapes), and lists the
// erasures made in the period or covering its entries. It adds the
// witnessed checkpoint with its cosigners, a statement of what the log
// provides towards PCI DSS v4.0 10.3.4 and 10.5, SOC 2 CC7.2 and ISO/IEC
// 27001:2022 A.8.15 and what remains the operator's, and the commands that
// re-check it all independently.
//
// The report is its own package rather than part of package auditor: the
// auditor decides whether a log misbehaves and stays small for that; the
// report is a reading of its result for people (HTML, prose about
// controls) and programs (JSON), and depends on the search package's field
// extraction, which the auditor has no use for.
//
// A Report marshals to JSON with stable field names (Format names the
// schema), and WriteHTML renders one self-contained page: inline CSS, no
// script, nothing loaded from elsewhere, laid out to print.
package report
