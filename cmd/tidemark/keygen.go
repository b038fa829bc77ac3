package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/tidemark/tidemark/internal/pkcs11key"
	tlog "github.com/tidemark/tidemark/log"
)

func runKeygen(args []string) error {
	fs := newFlags("keygen", "ORIGIN [--out PREFIX] [--witness] [--pkcs11 URI]",
		"Writes PREFIX.key (the signer key, mode 0600) and PREFIX.pub (its verifier key).\n"+
			"ORIGIN is the log's origin, e.g. audit.example.com/prod, or a witness's name.\n"+
			"With --pkcs11, makes the key in a PKCS#11 token instead and writes only PREFIX.pub (docs/keys.md).")
	out := fs.String("out", "", "file name prefix (default: \"log\", or \"witness\" with --witness)")
	witness := fs.Bool("witness", false, "make a witness key (cosignature/v1, type 0x04) instead of a log key")
	p11 := fs.String("pkcs11", "", "make an Ed25519 key pair in the PKCS#11 token this URI names (pkcs11:token=T;object=NEW-LABEL?module-path=...&pin-source=file:...), the private key not extractable; pass the same URI to --key")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"want exactly one ORIGIN, e.g. `tidemark keygen audit.example.com/prod`"}
	}
	prefix := *out
	if prefix == "" {
		prefix = "log"
		if *witness {
			prefix = "witness"
		}
	}
	if *p11 != "" {
		return keygenPKCS11(*p11, pos[0], *witness, prefix)
	}
	var skey, vkey string
	if *witness {
		skey, vkey, err = checkpoint.GenerateWitnessKey(pos[0])
	} else {
		skey, vkey, err = checkpoint.GenerateLogKey(pos[0])
	}
	if err != nil {
		return err
	}
	f, err := os.OpenFile(prefix+".key", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("couldn't create the key file (an existing key is never overwritten): %w", err)
	}
	if _, err := f.WriteString(skey + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(prefix+".pub", []byte(vkey+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s.key and %s.pub\n%s\n", prefix, prefix, vkey)
	return nil
}

// keygenPKCS11 makes a key pair in a token and writes PREFIX.pub.
func keygenPKCS11(uri, name string, witness bool, prefix string) error {
	if _, err := pkcs11key.ParseURI(uri); err != nil {
		return usageError{err.Error()}
	}
	k, err := pkcs11key.Generate(uri)
	if err != nil {
		return err
	}
	defer k.Close()
	var vkey string
	if witness {
		_, vkey, err = checkpoint.NewWitnessSignerFrom(name, k)
	} else {
		_, vkey, err = checkpoint.NewLogSignerFrom(name, k)
	}
	if err != nil {
		return err
	}
	f, err := os.OpenFile(prefix+".pub", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("the key is in the token, but couldn't create %s.pub: %w (its verifier key: %s)", prefix, err, vkey)
	}
	if _, err := f.WriteString(vkey + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("made the key in the token (%s) and wrote %s.pub\n%s\n", pkcs11key.Redact(uri), prefix, vkey)
	return nil
}

func runToken(args []string) error {
	fs := newFlags("token", "NAME",
		"Prints a new random bearer token and the line that grants it in a tokens file.\n"+
			"NAME is the source stamped into the leaves written with the token.")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"want exactly one NAME, e.g. `tidemark token deploy-bot`"}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	token := "tdm_" + base64.RawURLEncoding.EncodeToString(b)
	line := tlog.TokenLine(pos[0], token)
	if _, err := tlog.ParseTokens([]byte(line)); err != nil {
		return err
	}
	fmt.Printf("%s\n%s\n", token, line)
	fmt.Fprintf(os.Stderr, "first line: the token, for the sender only; second line: add it to the log's --tokens file, then send SIGHUP to the log\n")
	return nil
}
