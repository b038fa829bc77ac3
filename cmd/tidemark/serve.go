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

// serveUntilSignal runs servers until SIGTERM or SIGINT (or one fails), calling reload
// on SIGHUP. It then stops them gracefully, waiting for requests in flight,
// and calls stop. If a listener cannot be opened, stop is called at once.
// running is logged once every listener is open.
func serveUntilSignal(logger *slog.Logger, servers []*http.Server, reload func(), stop func(context.Context) error, running func()) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	errc := make(chan error, len(servers))
	for _, hs := range servers {
		ln, err := net.Listen("tcp", hs.Addr)
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			_ = stop(ctx)
			return fmt.Errorf("couldn't listen: %w", err)
		}
		go func() {
			if hs.TLSConfig != nil {
				errc <- hs.ServeTLS(ln, "", "")
			} else {
				errc <- hs.Serve(ln)
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
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
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
