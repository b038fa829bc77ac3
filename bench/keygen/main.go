// Command keygen writes a signed-note (golang.org/x/mod/sumdb/note) Ed25519 key
// pair for the benchmarks: PREFIX.key holds the signer key string (the format
// Tessera's conformance servers read with --private_key) and PREFIX.pub the
// verifier key (vkey) string that the hammer takes as --log_public_key. Neither
// file ends in a newline: the conformance server reads the key file verbatim.
//
// It deliberately does not use tidemark's own keygen so that the baseline
// (Tessera's conformance server) does not depend on Tidemark code.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	origin := flag.String("origin", "bench.tidemark.example/log", "log origin (the key name)")
	out := flag.String("out", "bench", "output prefix: writes PREFIX.key (0600) and PREFIX.pub")
	flag.Parse()
	skey, vkey, err := note.GenerateKey(rand.Reader, *origin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keygen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out+".key", []byte(skey), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "keygen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out+".pub", []byte(vkey), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "keygen:", err)
		os.Exit(1)
	}
	fmt.Println(vkey)
}
