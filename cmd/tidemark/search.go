package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/client"
	"github.com/tidemark/tidemark/internal/search"
)

func runSearch(args []string) error {
	fs := newFlags("search", "--log URL [--actor A] [--action A] [--resource R] [--source S] [--outcome O] [--since T] [--until T] [--q WORDS] [--limit N] [--all] [--json] [--verify --policy FILE]",
		"Finds events in a log by who did what, on what, with what outcome, when, and by words (GET /v1/search).\n"+
			"Every filter given must hold; a value ending in '*' is a prefix (--resource 'prod/*'). Hits come newest\n"+
			"first, one a line: index, received, source, actor, action, resource, outcome (\"-\" for none), or with\n"+
			"--json one JSON object a line: {\"index\":N,\"received\":\"...\",\"source\":\"...\",\"event\":{...}}.\n"+
			"One page of --limit hits, and a line on stderr with the cursor of the next; --all follows every page.\n"+
			"The log's search index is built beside ingest: when it is behind the log, stderr says so, and the newest\n"+
			"events may be missing. A log with --read-tokens needs --read-token-file.\n\n"+
			"A search answer is the log's word. --verify --policy FILE proves each hit: it fetches the entry's\n"+
			"receipt, verifies it as `tidemark verify` does (log signature, witness quorum, inclusion proof), and\n"+
			"checks that the receipt's leaf is the hit (same event, source and received time).\n\n"+
			"Examples:\n"+
			"  tidemark search --log https://audit.example.com --actor alice --since 24h\n"+
			"  tidemark search --log URL --resource 'prod/secrets/*' --action secret.read --all --json\n"+
			"  tidemark search --log URL --q 'rotation denied' --verify --policy log.policy\n\n"+
			"Exit status 0: searched (and with --verify, every hit verified; no hits is not a failure);\n"+
			"1: the search failed, or with --verify a hit did not verify (each says why); 2: a mistake in the command line.")
	logURL := fs.String("log", "", "the log's URL (required), e.g. https://audit.example.com")
	var q client.SearchQuery
	fs.StringVar(&q.Actor, "actor", "", "who: the event's actor (user.username of Kubernetes, userIdentity of CloudTrail, ...); 'x*' for a prefix")
	fs.StringVar(&q.Action, "action", "", "what: the event's action (verb, eventName, ...); 'x*' for a prefix")
	fs.StringVar(&q.Resource, "resource", "", "on what: the event's resource (objectRef, ...); 'x*' for a prefix")
	fs.StringVar(&q.Source, "source", "", "the writer the log stamped (its token's name or certificate's common name); 'x*' for a prefix")
	fs.StringVar(&q.Outcome, "outcome", "", "success, denied or failure (or the event's own word); 'x*' for a prefix")
	since := fs.String("since", "", "received at or after this time: RFC 3339 (2026-11-24T09:00:00Z) or a duration ago (24h, 90m)")
	until := fs.String("until", "", "received before this time: RFC 3339 or a duration ago")
	fs.StringVar(&q.Q, "q", "", "words that must all be among the event's string values ('rot*' for a prefix)")
	fs.IntVar(&q.Limit, "limit", search.DefaultLimit, fmt.Sprintf("hits per page, 1 to %d", search.MaxLimit))
	fs.StringVar(&q.Cursor, "cursor", "", "start at this page: the cursor a previous search printed")
	all := fs.Bool("all", false, "follow the pages to the last hit")
	asJSON := fs.Bool("json", false, "print hits as NDJSON, as the log answered them (with --verify, with \"verified\" and \"error\")")
	doVerify := fs.Bool("verify", false, "prove each hit with its receipt, against --policy")
	policyFile := fs.String("policy", "", "the trust policy of the log, for --verify")
	readTokenFile := fs.String("read-token-file", "", "file holding a read token (its first line), for a log with --read-tokens")
	mappingFile := fs.String("search-mapping", "", "the log's --search-mapping file, to print the fields of events of other shapes as the log indexes them")
	tlsCA := addTLSCAFlag(fs, "logs")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *logURL == "":
		return usageError{"--log URL is required"}
	case len(pos) > 0:
		return usageError{fmt.Sprintf("unexpected argument %q: filters are flags (--actor, --q 'words', ...)", pos[0])}
	case q.Limit < 1 || q.Limit > search.MaxLimit:
		return usageError{fmt.Sprintf("--limit is from 1 to %d", search.MaxLimit)}
	case *doVerify && *policyFile == "":
		return usageError{"--verify needs --policy FILE: a receipt means nothing without the keys and quorum you trust"}
	case !*doVerify && *policyFile != "":
		return usageError{"--policy is for --verify: add --verify to prove the hits"}
	case *all && q.Cursor != "":
		return usageError{"give --all or --cursor, not both"}
	}
	now := time.Now()
	if q.Since, err = parseWhen("--since", *since, now); err != nil {
		return err
	}
	if q.Until, err = parseWhen("--until", *until, now); err != nil {
		return err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return usageError{fmt.Sprintf("--since (%s) is not before --until (%s)", q.Since.Format(time.RFC3339), q.Until.Format(time.RFC3339))}
	}
	var policy *checkpoint.Policy
	if *doVerify {
		if policy, _, err = loadPolicy(*policyFile); err != nil {
			return err
		}
	}
	var mapping *search.Mapping
	if *mappingFile != "" {
		b, err := readLimited(*mappingFile, 1<<20)
		if err != nil {
			return err
		}
		if mapping, err = search.ParseMapping(b); err != nil {
			return fmt.Errorf("--search-mapping %s: %w", *mappingFile, err)
		}
	}
	rootCAs, err := loadTLSCA(*tlsCA)
	if err != nil {
		return err
	}
	var token string
	if *readTokenFile != "" {
		if token, err = readToken(*readTokenFile); err != nil {
			return usageError{fmt.Sprintf("--read-token-file: %v", err)}
		}
	}
	c, err := client.New(*logURL, &client.Options{ReadToken: token, RootCAs: rootCAs, MaxBackoff: 2 * time.Second})
	if err != nil {
		return usageError{err.Error()}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	s := searcher{c: c, policy: policy, mapping: mapping, json: *asJSON, out: out}
	first := true
	for page, err := range c.SearchPages(ctx, q) {
		if err != nil {
			return searchError(err, token != "")
		}
		if first {
			first = false
			s.warnIfBehind(ctx, page.CompleteTo)
		}
		if err := s.page(ctx, page); err != nil {
			return err
		}
		if !*all {
			if page.Next != "" {
				out.Flush()
				fmt.Fprintf(os.Stderr, "more hits: add --cursor %s for the next page, or --all for every page\n", page.Next)
			}
			break
		}
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if s.failed > 0 {
		return fmt.Errorf("%d of %d hits did NOT verify (see each line): the log's search answered with entries it cannot prove as answered", s.failed, s.hits)
	}
	if *doVerify && s.hits > 0 {
		fmt.Fprintf(os.Stderr, "all %d hits verified against %s\n", s.hits, *policyFile)
	}
	return nil
}

// parseWhen reads --since or --until: RFC 3339, or a duration before now.
func parseWhen(flagName, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageError{fmt.Sprintf("%s %q: give an RFC 3339 time (2026-11-24T09:00:00Z) or a duration ago (24h, 90m)", flagName, v)}
}

// searchError says what to do about a failed search.
func searchError(err error, hadToken bool) error {
	var ce *client.Error
	if errors.As(err, &ce) {
		switch {
		case ce.Status == http.StatusUnauthorized:
			return fmt.Errorf("%w\nthis log protects what its entries hold: give a read token with --read-token-file FILE", err)
		case ce.Status == http.StatusForbidden && hadToken:
			return fmt.Errorf("%w\nthe log does not know this read token: is it in the log's --read-tokens file (and the log sent SIGHUP)?", err)
		case ce.Status == http.StatusNotFound:
			return fmt.Errorf("%w\nthis log has no search endpoint: is it an older Tidemark, or is --log not the log's URL?", err)
		}
	}
	return tlsHint(err)
}

// searcher prints hits, and with a policy proves them.
type searcher struct {
	c            *client.Client
	policy       *checkpoint.Policy
	mapping      *search.Mapping
	json         bool
	out          *bufio.Writer
	hits, failed int
}

// warnIfBehind says on stderr when the search index is behind the log's
// latest checkpoint.
func (s *searcher) warnIfBehind(ctx context.Context, completeTo uint64) {
	size, err := s.c.LatestSize(ctx)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "couldn't read the log's size to tell whether its search index is complete: %v\n", err)
	case completeTo < size:
		fmt.Fprintf(os.Stderr, "the log's search index covers entries 0 to %d of %d: hits among the newest %d entries may be missing (search again shortly)\n",
			completeTo, size, size-completeTo)
	}
}

func (s *searcher) page(ctx context.Context, p *client.SearchPage) error {
	for _, h := range p.Results {
		s.hits++
		var verified *client.Verified
		var vErr error
		if s.policy != nil {
			verified, vErr = proveHit(ctx, s.c, s.policy, h)
			if vErr != nil {
				s.failed++
			}
		}
		if s.json {
			line := struct {
				client.SearchHit
				Verified *bool  `json:"verified,omitempty"`
				Error    string `json:"error,omitempty"`
			}{SearchHit: h}
			if s.policy != nil {
				ok := vErr == nil
				line.Verified = &ok
				if vErr != nil {
					line.Error = vErr.Error()
				}
			}
			b, err := json.Marshal(line)
			if err != nil {
				return err
			}
			s.out.Write(append(b, '\n'))
			continue
		}
		f := search.Extract(h.Event, s.mapping)
		fmt.Fprintf(s.out, "%d  %s  %s  %s  %s  %s  %s\n", h.Index, h.Received.UTC().Format(time.RFC3339Nano),
			field(h.Source), field(f.Actor), field(f.Action), field(f.Resource), field(f.Outcome))
		switch {
		case s.policy == nil:
		case vErr != nil:
			fmt.Fprintf(s.out, "    NOT VERIFIED: %v\n", vErr)
		default:
			fmt.Fprintf(s.out, "    verified: in checkpoint %d of %s%s\n", verified.Checkpoint.Size, verified.Checkpoint.Origin, cosignedBy(verified))
		}
	}
	return s.out.Flush()
}

// proveHit fetches the receipt of a hit, verifies it against the policy as
// `tidemark verify` does, and checks that its leaf is the hit.
func proveHit(ctx context.Context, c *client.Client, p *checkpoint.Policy, h client.SearchHit) (*client.Verified, error) {
	r, err := c.Receipt(ctx, h.Index)
	if err != nil {
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status == http.StatusServiceUnavailable {
			return nil, fmt.Errorf("no receipt yet: no checkpoint cosigned by the witnesses covers entry %d (%v); search again in a few seconds", h.Index, err)
		}
		return nil, fmt.Errorf("couldn't fetch the receipt of entry %d: %w", h.Index, err)
	}
	v, err := client.Verify(p, r)
	if err != nil {
		return nil, fmt.Errorf("RECEIPT REFUSED: %w", err)
	}
	if err := client.CheckHit(h, r); err != nil {
		return nil, fmt.Errorf("RECEIPT REFUSED: %w", err)
	}
	return v, nil
}

func cosignedBy(v *client.Verified) string {
	if len(v.Cosigners) == 0 {
		return ""
	}
	var names []string
	for n := range v.Cosigners {
		names = append(names, n)
	}
	slices.Sort(names)
	return ", cosigned by " + strings.Join(names, ", ")
}

// field is a value for a line of hits: "-" for none, quoted when it holds
// spaces or control characters, so that the columns stay apart.
func field(v string) string {
	if v == "" {
		return "-"
	}
	if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) || strings.HasPrefix(v, `"`) {
		return strconv.Quote(v)
	}
	return v
}
