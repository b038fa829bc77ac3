package report

import "github.com/tidemark/tidemark/checkpoint"

// kindOf classifies b by what it claims to be: the leaves the log writes
// are known by their first member (checkpoint.FirstMemberKind), at once;
// checkpoint.KindOf reads the claim of anything else. Telling a canonical
// leaf from a claim is the auditor's, and the report parses the leaves it
// reads (the period's, and erasures).
func kindOf(b []byte) checkpoint.LeafKind {
	if k := checkpoint.FirstMemberKind(b); k != checkpoint.KindRaw {
		return k
	}
	return checkpoint.KindOf(b)
}
