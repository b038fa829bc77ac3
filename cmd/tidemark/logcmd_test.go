package main

import (
	"net/http"
	"testing"
	"time"
)

// The log's server times out writes (a client that stops reading its
// answer must not hold a connection for ever), but never before the
// longest legitimate answer: the whole body read, then a ?wait=witnessed
// wait of --witness-wait-timeout.
func TestLogWriteTimeoutOutlastsTheLongestAnswer(t *testing.T) {
	for _, wait := range []time.Duration{time.Second, 10 * time.Second, 5 * time.Minute} {
		hs := newHTTPServer("127.0.0.1:0", http.NotFoundHandler(), wait)
		if hs.WriteTimeout == 0 {
			t.Fatal("no WriteTimeout")
		}
		if hs.WriteTimeout < hs.ReadTimeout+wait+10*time.Second {
			t.Errorf("--witness-wait-timeout %v: WriteTimeout %v, shorter than the body read (%v) and the wait", wait, hs.WriteTimeout, hs.ReadTimeout)
		}
	}
}
