package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tidemark/tidemark/client"
	tlog "github.com/tidemark/tidemark/log"
)

func runSubmit(args []string) error {
	fs := newFlags("submit", "--log URL [--token-file F] [--wait] [FILE|-]",
		"Sends audit events to a log: one JSON object, or several (NDJSON, or objects one after another), from FILE\n"+
			"or stdin. Prints one JSON line per event: {\"index\":N}, or with --wait its receipt\n"+
			"({\"index\":N,\"leaf\":...,\"proof\":...}, which `tidemark verify` reads). Retries 503/429 and network errors\n"+
			"with one Idempotency-Key, so a retry is never a second entry; any other refusal (4xx) is not retried. The token\n"+
			"comes from --token-file (its first line: the token `tidemark token` printed first) or TIDEMARK_TOKEN,\n"+
			"never from the command line. Over HTTPS, --tls-ca trusts a private CA, and --tls-cert and --tls-key\n"+
			"present a client certificate, which names the source to a log started with --tls-client-ca.\n"+
			"Stdout holds only results: nothing is printed for events not logged.\n\n"+
			"Exit status:\n"+
			"  0  every event is logged (with --wait: witnessed, and its receipt printed)\n"+
			"  1  nothing printed: the log refused the events (the message says why; sending them again would\n"+
			"     be refused too), or they could not be delivered (the log unreachable or failing after the\n"+
			"     retries: rerun with the same --idempotency-key), or the input or token file is unusable\n"+
			"  2  a mistake in the command line or in a TIDEMARK_SUBMIT_* variable\n"+
			"  3  with --wait: the events are logged and their indexes printed ({\"index\":N}), but no witnessed\n"+
			"     checkpoint covered them in time: do not send them again, fetch their receipts later")
	logURL := fs.String("log", "", "the log's URL (required), e.g. http://127.0.0.1:8080")
	tokenFile := fs.String("token-file", "", "file holding the writer's bearer token on its first line (default: $TIDEMARK_TOKEN, or none)")
	wait := fs.Bool("wait", false, "wait for a checkpoint cosigned by the witness quorum and print receipts")
	key := fs.String("idempotency-key", "", "idempotency key (default: random per run); the same key makes a rerun safe")
	tlsCA := addTLSCAFlag(fs, "logs")
	certFile := fs.String("tls-cert", "", "PEM client certificate to present to the log (with --tls-key): a log with --tls-client-ca takes its subject's common name as the source")
	keyFile := fs.String("tls-key", "", "the PEM private key of --tls-cert")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *logURL == "" {
		return usageError{"--log URL is required"}
	}
	if len(pos) > 1 {
		return usageError{"give one FILE, or - (the default) for stdin"}
	}
	in := "-"
	if len(pos) == 1 {
		in = pos[0]
	}
	rootCAs, clientCert, err := loadClientTLS(*tlsCA, *certFile, *keyFile)
	if err != nil {
		return err
	}
	token, err := writerToken(*tokenFile)
	if err != nil {
		return err
	}
	body, err := readLimited(in, 64<<20)
	if err != nil {
		return err
	}
	events, err := splitEvents(body)
	if err != nil {
		return err
	}
	c, err := client.New(*logURL, &client.Options{Token: token, RootCAs: rootCAs, Certificate: clientCert})
	if err != nil {
		return usageError{err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var opts []client.SubmitOption
	if *wait {
		opts = append(opts, client.Wait())
	}
	if *key == "" {
		// Ours rather than the client's, so that a failure can name it.
		*key = randomKey()
	}
	opts = append(opts, client.IdempotencyKey(*key))
	var results []client.Result
	if len(events) == 1 {
		var r client.Result
		r, err = c.Submit(ctx, events[0], opts...)
		results = []client.Result{r}
	} else {
		anys := make([]any, len(events))
		for i, e := range events {
			anys[i] = e
		}
		results, err = c.SubmitBatch(ctx, anys, opts...)
	}
	// Only a 504 after --wait carries results (client.Error): the events
	// are logged, and their indexes are printed. Anything else that failed
	// logged nothing this run can show, and prints nothing.
	var ce *client.Error
	notWitnessed := errors.As(err, &ce) && ce.Status == http.StatusGatewayTimeout && len(ce.Results) > 0
	if err != nil && !notWitnessed {
		if hinted := tlsHint(err); hinted != err {
			return hinted // the TLS handshake failed: nothing was sent
		}
		if !errors.As(err, &ce) || ce.Status >= 500 {
			// Not delivered, or not answered: the events may be logged.
			return fmt.Errorf("%w\nThe events may or may not be logged: send them again with --idempotency-key %s, so that the log answers with the first indexes instead of logging them twice", err, *key)
		}
		return err
	}
	if notWitnessed {
		results = ce.Results
	}
	enc := json.NewEncoder(os.Stdout)
	for _, r := range results {
		var out any = r
		if r.Receipt != nil {
			out = r.Receipt
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	if notWitnessed {
		return exitError{3, fmt.Errorf("%w\nThe events are logged (their indexes are printed) but not witnessed yet: do not send them again; fetch their receipts later with GET /v1/receipt/INDEX", err)}
	}
	return nil
}

// writerToken returns the writer's token: from the token file at path, or
// $TIDEMARK_TOKEN when path is "".
func writerToken(path string) (string, error) {
	if path != "" {
		return readToken(path)
	}
	t := strings.TrimSpace(os.Getenv("TIDEMARK_TOKEN"))
	if strings.ContainsAny(t, " \t\r\n") {
		return "", errors.New("TIDEMARK_TOKEN holds more than a token: set it to the first line `tidemark token` printed (tdm_...), not both lines")
	}
	return t, nil
}

// readToken returns the token in a token file: its first line.
// `tidemark token` prints two lines, the token and the tokens-file line that
// belongs to the log: a file holding more than the token is refused, saying
// which line to keep, rather than sent as a token that can only be refused.
func readToken(path string) (string, error) {
	b, err := readLimited(path, 64<<10)
	if err != nil {
		return "", fmt.Errorf("couldn't read the token: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), " \t\r\n"), "\n")
	token := strings.TrimSpace(lines[0])
	const which = "a token file holds only the token, the first line `tidemark token NAME` printed (tdm_...); " +
		"the second line (NAME sha256:HEX) goes in the log's tokens file (--tokens, or --read-tokens for a read token)"
	switch {
	case token == "":
		return "", fmt.Errorf("the token file %s is empty or starts with a blank line: %s", path, which)
	case isTokensLine(token):
		return "", fmt.Errorf("the first line of %s is a tokens-file line, which is for the log, not a token: %s", path, which)
	case len(lines) > 1:
		return "", fmt.Errorf("the token file %s has %d lines: keep only the first one; %s", path, len(lines), which)
	case strings.ContainsAny(token, " \t"):
		return "", fmt.Errorf("the first line of %s holds spaces, so it is not a token: %s", path, which)
	}
	return token, nil
}

// randomKey returns a new idempotency key.
func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather)
	return "tdm-" + hex.EncodeToString(b[:])
}

// isTokensLine reports whether line is a line of a log's tokens file.
func isTokensLine(line string) bool {
	_, err := tlog.ParseTokens([]byte(line))
	return err == nil
}

// splitEvents reads the JSON values of an input, one or more, each of which
// must be an object.
func splitEvents(b []byte) ([]json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	var events []json.RawMessage
	for {
		var v json.RawMessage
		err := d.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("event %d: not JSON: %w", len(events)+1, err)
		}
		if !bytes.HasPrefix(v, []byte("{")) {
			return nil, fmt.Errorf("event %d: not a JSON object", len(events)+1)
		}
		events = append(events, v)
	}
	if len(events) == 0 {
		return nil, errors.New("no events in the input")
	}
	return events, nil
}
