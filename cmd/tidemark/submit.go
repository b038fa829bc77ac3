package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tidemark/tidemark/client"
)

func runSubmit(args []string) error {
	fs := newFlags("submit", "--log URL [--token-file F] [--wait] [FILE|-]",
		"Sends audit events to a log: one JSON object, or several (NDJSON, or objects one after another), from FILE\n"+
			"or stdin. Prints one JSON line per event: {\"index\":N}, or with --wait its receipt\n"+
			"({\"index\":N,\"leaf\":...,\"proof\":...}, which `tidemark verify` reads). Retries 503/429 and network errors\n"+
			"with one Idempotency-Key, so a retry is never a second entry. The token comes from --token-file or\n"+
			"TIDEMARK_TOKEN, never from the command line. Over HTTPS, --tls-ca trusts a private CA, and --tls-cert and\n"+
			"--tls-key present a client certificate, which names the source to a log started with --tls-client-ca.")
	logURL := fs.String("log", "", "the log's URL (required), e.g. http://127.0.0.1:8080")
	tokenFile := fs.String("token-file", "", "file holding the writer's bearer token (default: $TIDEMARK_TOKEN, or none)")
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
	token := os.Getenv("TIDEMARK_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("couldn't read the token: %w", err)
		}
		token = strings.TrimSpace(string(b))
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
	if *key != "" {
		opts = append(opts, client.IdempotencyKey(*key))
	}
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
	var ce *client.Error
	if errors.As(err, &ce) && len(ce.Results) > 0 {
		results = ce.Results // logged, not yet witnessed: print the indexes
	} else if err != nil {
		return tlsHint(err)
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
	return err
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
