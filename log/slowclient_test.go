package log

import (
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// Clients that send their bodies a byte at a time (slowloris) hold their
// connections, and nothing else: everyone else is answered as usual.
func TestSlowClientsDoNotStopOthers(t *testing.T) {
	tl := newTestLog(t, nil)
	addr := tl.hs.Listener.Addr().String()
	stop := make(chan struct{})
	defer close(stop)
	for i := range 64 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Declares 8 MB, then sends a byte every 100 ms.
		fmt.Fprintf(conn, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n{\"slow\":%d}\n", 8<<20, i)
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
	}
	for i := range 20 {
		if r := tl.post("/v1/events", "application/json", []byte(fmt.Sprintf(`{"n":%d}`, i))); r.status != http.StatusOK {
			t.Fatalf("request %d beside 64 slow clients: %d %s", i, r.status, r.body)
		}
	}
	if n := tl.size(); n != 20 {
		t.Errorf("tree size %d, want 20", n)
	}
}
