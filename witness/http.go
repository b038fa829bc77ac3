package witness

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the witness's HTTP API, with /metrics and /healthz when
// withAdmin is set (else serve AdminHandler elsewhere).
func (w *Witness) Handler(withAdmin bool) http.Handler {
	r := mux.NewRouter().SkipClean(true)
	if withAdmin {
		w.adminRoutes(r)
	}
	r.HandleFunc("/add-checkpoint", w.handleAdd).Methods(http.MethodPost)
	r.HandleFunc("/{hash:[0-9a-f]{64}}/checkpoint", w.handleCheckpoint).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/logs", w.handleLogs).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/evidence", w.handleEvidence).Methods(http.MethodGet, http.MethodHead)
	r.NotFoundHandler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Error(rw, "no such endpoint", http.StatusNotFound)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Error(rw, r.Method+" is not allowed here", http.StatusMethodNotAllowed)
	})
	return r
}

// AdminHandler returns /metrics, /healthz and Go's profiler
// (/debug/pprof/), for an admin listener of its own, as the log's does.
func (w *Witness) AdminHandler() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/debug/pprof/profile", pprof.Profile)
	r.HandleFunc("/debug/pprof/trace", pprof.Trace)
	r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index)
	w.adminRoutes(r)
	return r
}

func (w *Witness) adminRoutes(r *mux.Router) {
	r.Handle("/metrics", promhttp.HandlerFor(w.cfg.Registry, promhttp.HandlerOpts{}))
	r.HandleFunc("/healthz", func(rw http.ResponseWriter, r *http.Request) {
		_, _ = rw.Write([]byte("ok\n"))
	})
}

// handleAdd is POST /add-checkpoint: read the body within bounds, run Add,
// and map its outcome to a status in one switch.
func (w *Witness) handleAdd(rw http.ResponseWriter, r *http.Request) {
	select {
	case w.inflight <- struct{}{}:
		defer func() { <-w.inflight }()
	default:
		w.answer(rw, http.StatusServiceUnavailable, "text/plain; charset=utf-8", "overloaded: too many requests in flight\n", 1)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, int64(MaxRequestSize)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			w.answer(rw, http.StatusRequestEntityTooLarge, "text/plain; charset=utf-8", "request body larger than "+strconv.Itoa(MaxRequestSize)+" bytes\n", 0)
			return
		}
		w.answer(rw, http.StatusBadRequest, "text/plain; charset=utf-8", "couldn't read the request body\n", 0)
		return
	}
	req, err := ParseAddRequest(body)
	var cosig []byte
	if err == nil {
		cosig, err = w.Add(r.Context(), req)
	}
	var sizeErr *sizeConflictError
	var rateErr *rateLimitedError
	var diskErr *storageError
	switch {
	case err == nil:
		w.answer(rw, http.StatusOK, "text/plain; charset=utf-8", string(cosig), 0)
	case errors.Is(err, errMalformed), errors.Is(err, errOldTooLarge):
		w.answer(rw, http.StatusBadRequest, "text/plain; charset=utf-8", err.Error()+"\n", 0)
	case errors.Is(err, errUnknownOrigin):
		w.answer(rw, http.StatusNotFound, "text/plain; charset=utf-8", err.Error()+"\n", 0)
	case errors.Is(err, errUnverified):
		w.answer(rw, http.StatusForbidden, "text/plain; charset=utf-8", err.Error()+"\n", 0)
	case errors.As(err, &sizeErr):
		w.answer(rw, http.StatusConflict, "text/x.tlog.size", strconv.FormatUint(sizeErr.size, 10)+"\n", 0)
	case errors.Is(err, errRootConflict):
		w.answer(rw, http.StatusConflict, "text/plain; charset=utf-8", err.Error()+"\n", 0)
	case errors.Is(err, errBadProof):
		w.answer(rw, http.StatusUnprocessableEntity, "text/plain; charset=utf-8", err.Error()+"\n", 0)
	case errors.As(err, &rateErr):
		w.answer(rw, http.StatusTooManyRequests, "text/plain; charset=utf-8", err.Error()+"\n", rateErr.retryAfter)
	case errors.As(err, &diskErr):
		// No cosignature without durable state; nothing was stored.
		w.log.Error("add-checkpoint refused: the state cannot be written", "kind", diskErr.kind, "err", err)
		w.metrics.storageErrors.WithLabelValues(diskErr.kind).Inc()
		w.answer(rw, http.StatusServiceUnavailable, "text/plain; charset=utf-8", diskErr.answer(), storageRetryAfter)
	case errors.Is(err, errClosing), errors.Is(err, r.Context().Err()) && r.Context().Err() != nil:
		w.answer(rw, http.StatusServiceUnavailable, "text/plain; charset=utf-8", "try again\n", 1)
	default:
		w.log.Error("add-checkpoint failed", "err", err)
		w.answer(rw, http.StatusInternalServerError, "text/plain; charset=utf-8", "internal error\n", 0)
		return
	}
}

func (w *Witness) answer(rw http.ResponseWriter, status int, contentType, body string, retryAfter int) {
	rw.Header().Set("Content-Type", contentType)
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	if retryAfter > 0 {
		rw.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	rw.WriteHeader(status)
	_, _ = io.WriteString(rw, body)
	w.metrics.requests.WithLabelValues(strconv.Itoa(status)).Inc()
}

// handleCheckpoint is GET /<hex SHA-256 of origin>/checkpoint: the latest
// checkpoint cosigned for the origin, with the log's verified signatures and
// the witness's cosignature, and nothing else.
func (w *Witness) handleCheckpoint(rw http.ResponseWriter, r *http.Request) {
	// Public, and read by log web pages opened from anywhere.
	rw.Header().Set("Access-Control-Allow-Origin", "*")
	_, rec := w.state.byOriginHash(mux.Vars(r)["hash"])
	if rec == nil {
		http.Error(rw, "no checkpoint cosigned for this origin\n", http.StatusNotFound)
		return
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-cache")
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = rw.Write(rec.cosigned())
}

// LogInfo is an entry of GET /logs.
type LogInfo struct {
	Origin     string    `json:"origin"`
	OriginHash string    `json:"origin_sha256"`
	VKeys      []string  `json:"vkeys"`
	QPD        uint64    `json:"qpd,omitempty"`
	Contact    []string  `json:"contact,omitempty"`
	FollowURL  string    `json:"follow_url,omitempty"`
	Size       uint64    `json:"size"`
	RootHash   string    `json:"root_hash,omitempty"`
	Updated    time.Time `json:"updated,omitzero"`
	Evidence   int       `json:"evidence,omitempty"`
}

func (w *Witness) handleLogs(rw http.ResponseWriter, r *http.Request) {
	t := w.logs.Load()
	out := make([]LogInfo, 0, len(t.byOrigin))
	for origin, kl := range t.byOrigin {
		li := LogInfo{Origin: origin, OriginHash: originHash(origin), VKeys: kl.vkeys, QPD: kl.qpd, Contact: kl.contacts, FollowURL: kl.url,
			Evidence: w.evidence.count(origin)}
		if rec := w.state.lookup(origin); rec != nil {
			li.Size, li.RootHash, li.Updated = rec.Size, base64.StdEncoding.EncodeToString(rec.Root), rec.Updated
		}
		out = append(out, li)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin < out[j].Origin })
	writeJSON(rw, out)
}

func (w *Witness) handleEvidence(rw http.ResponseWriter, r *http.Request) {
	writeJSON(rw, w.evidence.all())
}

func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	enc := json.NewEncoder(rw)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
