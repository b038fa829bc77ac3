package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealthcheck GETs a URL and succeeds on a 2xx answer: the container
// image has no shell, curl or wget, so its healthchecks run
// `tidemark healthcheck http://127.0.0.1:8080/healthz`.
func runHealthcheck(args []string) error {
	fs := newFlags("healthcheck", "URL [--timeout D]",
		"GETs URL (e.g. http://127.0.0.1:8080/healthz) and exits 0 on a 2xx answer, 1 otherwise:\n"+
			"a healthcheck for images without curl or wget (docs/container.md).")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"want exactly one URL, e.g. `tidemark healthcheck http://127.0.0.1:8080/healthz`"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pos[0], nil)
	if err != nil {
		return usageError{err.Error()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", pos[0], resp.Status)
	}
	return nil
}
