package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// shutdownTimeout bounds a graceful stop: in-flight requests, then the
// server's own Close.
const shutdownTimeout = 30 * time.Second

// openListeners opens a listener on each address (skipping empty ones), all
// or none. Servers open their listeners before they create anything (keys,
// state), so that a start that fails because an address is taken leaves
// nothing behind.
func openListeners(addrs ...string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, a := range addrs {
		if a == "" {
			continue // an optional listener not asked for (--admin-listen)
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			closeListeners(lns)
			return nil, fmt.Errorf("couldn't listen on %s (is another server using it? choose another address with --listen or --admin-listen): %w", a, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func closeListeners(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}

// An endpoint is an HTTP server and the listener it serves on, opened
// earlier by openListeners.
type endpoint struct {
	hs *http.Server
	ln net.Listener
}

// serveUntilSignal serves each endpoint until SIGTERM or SIGINT (or one
// fails), calling reload on SIGHUP. It then stops them gracefully, waiting
// for requests in flight, and calls stop. running is called once every
// endpoint is being served.
func serveUntilSignal(logger *slog.Logger, endpoints []endpoint, reload func(), stop func(context.Context) error, running func()) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	errc := make(chan error, len(endpoints))
	for _, e := range endpoints {
		go func() {
			if e.hs.TLSConfig != nil {
				errc <- e.hs.ServeTLS(e.ln, "", "")
			} else {
				errc <- e.hs.Serve(e.ln)
			}
		}()
	}
	running()

	var serveErr error
loop:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload()
				continue
			}
			logger.Info("shutting down", "signal", sig.String())
			break loop
		case err := <-errc:
			serveErr = err
			break loop
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, e := range endpoints {
		if err := e.hs.Shutdown(ctx); err != nil {
			logger.Warn("HTTP shutdown", "err", err)
		}
	}
	if err := stop(ctx); err != nil {
		return err
	}
	logger.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
