package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tidemark/tidemark/client"
)

func runErase(args []string) error {
	fs := newFlags("erase", "--log URL --index N --reason TEXT [--token-file F]",
		"Erases the event of one entry of a commitment log (`tidemark log --leaves commitment`): the log appends an\n"+
			"erasure leaf naming the entry, the reason and the admin token's name, then deletes the event and its salt.\n"+
			"The entry's commitment stays, and every checkpoint, proof and receipt stays valid (docs/erasure.md).\n"+
			"The token is an admin token of the log (--admin-tokens), from --token-file (its first line) or TIDEMARK_TOKEN,\n"+
			"never from the command line. Prints {\"index\":N,\"erasure_index\":E}.\n\n"+
			"Exit status:\n"+
			"  0  erased\n"+
			"  1  refused (the message says why: not an admin token, no such entry, not an event's commitment,\n"+
			"     erased already) or the log could not be reached\n"+
			"  2  a mistake in the command line or in a TIDEMARK_ERASE_* variable")
	logURL := fs.String("log", "", "the log's URL (required), e.g. http://127.0.0.1:8080")
	index := fs.Int64("index", -1, "the index of the entry to erase (required)")
	reason := fs.String("reason", "", "why (required, at most 1024 bytes): recorded in the erasure leaf, public")
	tokenFile := fs.String("token-file", "", "file holding the admin's bearer token on its first line (default: $TIDEMARK_TOKEN)")
	tlsCA := addTLSCAFlag(fs, "logs")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError{"tidemark erase takes no arguments: give --index N"}
	case *logURL == "":
		return usageError{"--log URL is required"}
	case *index < 0:
		return usageError{"--index N is required (the entry to erase)"}
	case *reason == "":
		return usageError{"--reason TEXT is required: every erasure is logged with why it was made"}
	case len(*reason) > 1024:
		return usageError{fmt.Sprintf("--reason is %d bytes; at most 1024", len(*reason))}
	}
	rootCAs, _, err := loadClientTLS(*tlsCA, "", "")
	if err != nil {
		return err
	}
	token, err := writerToken(*tokenFile)
	if err != nil {
		return err
	}
	if token == "" {
		return errors.New("erasing needs an admin token: give --token-file FILE or set TIDEMARK_TOKEN")
	}
	c, err := client.New(*logURL, &client.Options{Token: token, RootCAs: rootCAs})
	if err != nil {
		return usageError{err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	e, err := c.Erase(ctx, uint64(*index), *reason)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(e)
}
