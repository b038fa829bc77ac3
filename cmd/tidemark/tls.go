package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/client"
)

// serverTLS is the TLS side of a server (`log`, `witness`): its certificate
// and, for the log, the CAs whose client certificates authenticate writers.
// Both are read from files at start and again by Reload (on SIGHUP). Each
// handshake takes what was loaded last, swapped atomically, so rotating a
// certificate needs no restart and drops no connection.
type serverTLS struct {
	certFile, keyFile string
	clientCAFile      string // empty: no client certificates asked for
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]
	// withClientCAs is the configuration of a handshake when clientCAFile
	// is set: the base one plus the writers' CAs last loaded. A CertPool
	// cannot drop a CA, so a reload builds a new configuration.
	withClientCAs atomic.Pointer[tls.Config]
}

// tlsServerFlags are the flags of a server's own TLS.
type tlsServerFlags struct {
	cert, key, clientCA *string
}

// addTLSServerFlags adds --tls-cert and --tls-key, and --tls-client-ca when
// clientCA describes what client certificates are for.
func addTLSServerFlags(fs *flag.FlagSet, clientCA string) tlsServerFlags {
	f := tlsServerFlags{
		cert: fs.String("tls-cert", "", "serve HTTPS (TLS 1.2 or later) on --listen and --admin-listen with this PEM certificate chain, leaf first; with --tls-key; reloaded on SIGHUP"),
		key:  fs.String("tls-key", "", "the PEM private key of --tls-cert; reloaded on SIGHUP"),
	}
	if clientCA != "" {
		f.clientCA = fs.String("tls-client-ca", "", clientCA)
	}
	return f
}

// load returns the server's TLS, or nil for plain HTTP when neither
// --tls-cert nor --tls-key is given.
func (f tlsServerFlags) load(logger *slog.Logger) (*serverTLS, error) {
	clientCA := ""
	if f.clientCA != nil {
		clientCA = *f.clientCA
	}
	if (*f.cert == "") != (*f.key == "") {
		return nil, usageError{"--tls-cert and --tls-key go together: give both (the PEM certificate chain and its private key) to serve HTTPS, or neither for plain HTTP"}
	}
	if *f.cert == "" {
		if clientCA != "" {
			return nil, usageError{"--tls-client-ca needs --tls-cert and --tls-key: client certificates are asked for in the TLS handshake, so the log must serve HTTPS"}
		}
		return nil, nil
	}
	s := &serverTLS{certFile: *f.cert, keyFile: *f.key, clientCAFile: clientCA, log: logger}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the certificate, its key and the client CAs again. On any
// error nothing changes: the previous ones stay in force.
func (s *serverTLS) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("couldn't load the TLS certificate %s and key %s: %w (give the PEM certificate chain, leaf first, and the PEM private key that matches it)", s.certFile, s.keyFile, err)
	}
	var clientCAs *x509.CertPool
	if s.clientCAFile != "" {
		b, err := os.ReadFile(s.clientCAFile)
		if err != nil {
			return fmt.Errorf("couldn't read --tls-client-ca: %w", err)
		}
		certs, err := client.ParseCertificates(b)
		if err != nil {
			return fmt.Errorf("--tls-client-ca %s: %w", s.clientCAFile, err)
		}
		// Only these CAs: a certificate from a CA the system trusts
		// must not name a writer.
		clientCAs = x509.NewCertPool()
		for _, c := range certs {
			clientCAs.AddCert(c)
		}
	}
	s.cert.Store(&cert)
	if clientCAs != nil {
		c := s.baseConfig()
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = clientCAs
		s.withClientCAs.Store(c)
	}
	leaf := cert.Leaf
	if leaf == nil { // GODEBUG=x509keypairleaf=0
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("couldn't parse the TLS certificate %s: %w", s.certFile, err)
		}
	}
	s.log.Info("TLS certificate loaded", "subject", leaf.Subject.String(), "dns", leaf.DNSNames, "ips", leaf.IPAddresses, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "client_ca", s.clientCAFile)
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		s.log.Warn("the TLS certificate is not valid now: clients will refuse it. Put a valid one in place and send SIGHUP",
			"not_before", leaf.NotBefore.UTC().Format(time.RFC3339), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// reload is Reload for SIGHUP: it logs the outcome.
func (s *serverTLS) reload() {
	if s == nil {
		return
	}
	if err := s.Reload(); err != nil {
		s.log.Error("TLS certificate not reloaded; the previous one stays in force", "err", err)
	}
}

// config returns the configuration for an http.Server's TLSConfig; nil
// (plain HTTP) when s is nil.
func (s *serverTLS) config() *tls.Config {
	if s == nil {
		return nil
	}
	c := s.baseConfig()
	if s.clientCAFile != "" {
		c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.withClientCAs.Load(), nil }
	}
	return c
}

func (s *serverTLS) baseConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
		// http.Server.ServeTLS sets these on the configuration it is
		// given, but not on the one GetConfigForClient returns.
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// addTLSCAFlag adds --tls-ca, the CAs trusted for outgoing HTTPS requests.
func addTLSCAFlag(fs *flag.FlagSet, what string) *string {
	return fs.String("tls-ca", "", "PEM file of CA certificates trusted, besides the system's, for HTTPS "+what)
}

// loadTLSCA returns the system's roots plus those of --tls-ca, or nil (the
// system's alone) without it.
func loadTLSCA(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pool, err := client.CertPool(path)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--tls-ca: %v", strings.TrimPrefix(err.Error(), "client: "))}
	}
	return pool, nil
}

// loadClientTLS loads the TLS side of a client subcommand: the CAs of
// --tls-ca, and the client certificate of --tls-cert and --tls-key.
func loadClientTLS(caFile, certFile, keyFile string) (*x509.CertPool, *tls.Certificate, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, nil, usageError{"--tls-cert and --tls-key go together: give both (the PEM client certificate and its private key), or neither"}
	}
	pool, err := loadTLSCA(caFile)
	if err != nil || certFile == "" {
		return pool, nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, usageError{fmt.Sprintf("couldn't load the client certificate %s and key %s: %v (give the PEM certificate and the PEM private key that matches it)", certFile, keyFile, err)}
	}
	return pool, &cert, nil
}

// tlsHint adds what to do next to a TLS failure of an outgoing request.
func tlsHint(err error) error {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verr     *tls.CertificateVerificationError
		oerr     *net.OpError
	)
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w\nthe server's certificate is not from a CA this machine trusts: give the CA certificate that issued it with --tls-ca FILE", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w\nthe server's certificate is not for the host name or address in the URL: use one it names", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w\nthe server's certificate is not valid (expired, or not for a server?): its operator must replace it", err)
	case errors.As(err, &verr):
		return fmt.Errorf("%w\nthe server's certificate did not verify", err)
	case errors.As(err, &oerr) && oerr.Op == "remote error" && strings.HasPrefix(oerr.Err.Error(), "tls: "):
		return fmt.Errorf("%w\nthe server refused the TLS handshake: if this command presented a client certificate (--tls-cert), the server does not trust its CA", err)
	}
	return err
}
