// Package web serves Tidemark's web page: the log's status, its newest
// entries, search, and a check of any entry that runs in the browser.
//
// The idea the page teaches is that a log's answers are claims to check,
// not facts to take. For an entry, the page fetches the signed checkpoint,
// the entry's bundle and the hash tiles, and checks with WebCrypto, in the
// browser, that
//
//   - the checkpoint is signed by the log's key (Ed25519);
//   - a quorum of the witnesses cosigned it (cosignature/v1), so the log
//     showed the same tree to them as to this page;
//   - hashing the entry (SHA-256, RFC 6962) and the tiles around it gives
//     back the checkpoint's root hash, so the entry is in that tree.
//
// The keys come from a policy the user pinned in the browser (trusted on
// first use, or pasted), not from the answer being checked: a policy the log
// serves later that differs from the pinned one is shown as a warning.
//
// A page served by the log itself can be made to lie by a dishonest log: it
// could serve a script that skips the checks. So the same files also work
// opened from anywhere else, a file:// URL or another host, and pointed at a
// log with the "Log URL" field or ?log=URL. docs/web.md says what each way
// of opening the page proves.
//
// The files under static/ are embedded in the binary, index.html at the
// top and the rest under ui/, as they are served (/ and /ui/FILE), so that
// static/index.html opened from a file finds them by relative paths. No
// CDN, no framework, no build step. ui/verify.js holds the verification code
// and nothing else, so it can be read on its own; it is tested in node
// against vectors made by the Go package checkpoint (web_test.go). The
// scripts are plain scripts, not ES modules, because browsers refuse module
// scripts from file:// URLs.
//
// Events are written by whoever can post to the log, so the page treats
// every string from the log as hostile: it writes text with textContent,
// never markup, and the Content-Security-Policy allows no inline script.
package web

import (
	"embed"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is sent with every file of the page: scripts and
// styles from the page's own origin only, nothing inline, no frames; the
// page may fetch from anywhere (connect-src *), because it can be pointed
// at another log and at that log's witnesses.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src *; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Handler serves GET (and HEAD) / with the page and /ui/FILE with its
// files. Any other path is a 404.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		var name string // under static/
		switch {
		case r.URL.Path == "/":
			name = "index.html"
		case strings.HasPrefix(r.URL.Path, "/ui/"):
			if f := strings.TrimPrefix(r.URL.Path, "/ui/"); f != "" && !strings.Contains(f, "/") && f[0] != '.' {
				name = "ui/" + f
			}
		}
		ctype := contentTypes[path.Ext(name)]
		var b []byte
		if name != "" && ctype != "" {
			b, _ = static.ReadFile("static/" + name)
		}
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if b == nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		h.Set("Content-Type", ctype)
		// The page changes with the binary: browsers revalidate each time.
		h.Set("Cache-Control", "no-cache")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(b)
	})
}
