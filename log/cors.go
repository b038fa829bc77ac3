package log

import "net/http"

// corsRead lets a page from any origin make a public read: the log's web
// page works opened from a file or another host and pointed at this log,
// which is how a reader checks a log without trusting the page the log
// serves. Reads carry no cookies, only an optional bearer read token,
// which the page must be given: "*" exposes nothing a plain HTTP client
// could not read. A nil h answers the preflight (OPTIONS).
func corsRead(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", "*")
		if h == nil {
			hd.Set("Access-Control-Allow-Methods", "GET, HEAD")
			hd.Set("Access-Control-Allow-Headers", "Authorization")
			hd.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		hd.Set("Access-Control-Expose-Headers", "Content-Length, Content-Type")
		h(w, r)
	})
}
