// Command k8sload loads a Tidemark log as kube-apiservers do with the audit
// webhook backend in batch mode: each request is an audit.k8s.io/v1
// EventList of --batch events (400, the apiserver's default
// --audit-webhook-batch-max-size) POSTed to /v1/k8s/audit, from --workers
// concurrent senders, each waiting for its answer before the next.
//
// The events are realistic apiserver events, rendered once and reused with a
// fresh auditID per send (so nothing is deduplicated):
//
//	60%  Metadata-level get/list/watch by service accounts and nodes (user
//	     with extra credential fields, sourceIPs, userAgent, objectRef,
//	     responseStatus, RBAC annotations)
//	25%  Request/RequestResponse-level create/patch/update of workloads,
//	     with a requestObject (a Deployment, a ConfigMap-sized patch)
//	15%  forbidden requests and secret reads (Failure responseStatus)
//
// The printed size is the average bytes of one event as sent.
//
// Only 200 answers with one result per event count. The last line is
// machine-readable:
//
//	RESULT mode=k8s events=N seconds=S events_per_sec=R p50_ms=... p99_ms=... errors=E retries=R workers=W batch=B size=AVG
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "the log's base URL")
	workers := flag.Int("workers", 8, "concurrent senders (apiservers)")
	batch := flag.Int("batch", 400, "events per EventList")
	duration := flag.Duration("duration", 20*time.Second, "measured time")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured start")
	seed := flag.Uint64("seed", 1, "corpus seed")
	tokenFile := flag.String("token-file", "", "file with a bearer token")
	flag.Parse()

	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		token = strings.TrimSpace(string(b))
	}
	templates := corpus(rand.New(rand.NewPCG(*seed, 2)), 512)
	avg := 0
	for _, t := range templates {
		avg += len(t.prefix) + 36 + len(t.suffix)
	}
	avg /= len(templates)
	fmt.Printf("corpus: %d event templates, %d bytes per event on average, %d events per EventList (%d KB)\n",
		len(templates), avg, *batch, avg**batch/1000)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *workers, DisableCompression: true}, Timeout: 5 * time.Minute}

	start := time.Now()
	measureFrom := start.Add(*warmup)
	measureTo := measureFrom.Add(*duration)
	var events, errs, retries atomic.Int64
	var mu sync.Mutex // guards lat, lastErr
	var lat []time.Duration
	var lastErr string
	var seq atomic.Uint64
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(*seed, uint64(w)+100))
			var body bytes.Buffer
			for ctx.Err() == nil && time.Now().Before(measureTo) {
				body.Reset()
				body.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
				for i := 0; i < *batch; i++ {
					if i > 0 {
						body.WriteByte(',')
					}
					t := templates[r.IntN(len(templates))]
					body.Write(t.prefix)
					id := seq.Add(1) // unique per send: nothing is deduplicated
					fmt.Fprintf(&body, "%08x-%04x-4%03x-8%03x-%012x", w, i&0xffff, id&0xfff, r.IntN(0x1000), id)
					body.Write(t.suffix)
				}
				body.WriteString("]}")
				sent := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *url+"/v1/k8s/audit", bytes.NewReader(body.Bytes()))
				req.Header.Set("Content-Type", "application/json")
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						mu.Lock()
						lastErr = err.Error()
						mu.Unlock()
					}
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done := time.Now()
				switch {
				case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
					// The apiserver backs off and resends the batch.
					retries.Add(1)
					wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
					time.Sleep(time.Duration(max(wait, 1)) * time.Second)
					continue
				case resp.StatusCode != http.StatusOK:
					errs.Add(1)
					mu.Lock()
					lastErr = fmt.Sprintf("%d %.200s", resp.StatusCode, b)
					mu.Unlock()
					continue
				}
				var res struct{ Results []json.RawMessage }
				if json.Unmarshal(b, &res) != nil || len(res.Results) != *batch {
					errs.Add(1)
					continue
				}
				if done.After(measureFrom) && !done.After(measureTo) {
					events.Add(int64(*batch))
					mu.Lock()
					lat = append(lat, done.Sub(sent))
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	secs := duration.Seconds()
	if lastErr != "" {
		fmt.Println("last error:", lastErr)
	}
	fmt.Printf("RESULT mode=k8s events=%d seconds=%.3f events_per_sec=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d retries=%d workers=%d batch=%d size=%d\n",
		events.Load(), secs, float64(events.Load())/secs, pct(0.5), pct(0.99), errs.Load(), retries.Load(), *workers, *batch, avg)
	if errs.Load() > 0 || ctx.Err() != nil {
		os.Exit(1)
	}
}

// A template is one event's JSON around its auditID.
type template struct{ prefix, suffix []byte }

func corpus(r *rand.Rand, n int) []template {
	namespaces := []string{"payments", "checkout", "search", "identity", "kube-system", "monitoring", "ingress-nginx", "data"}
	resources := []struct{ group, version, resource string }{
		{"", "v1", "pods"}, {"", "v1", "configmaps"}, {"", "v1", "services"}, {"", "v1", "endpoints"},
		{"apps", "v1", "deployments"}, {"apps", "v1", "replicasets"}, {"batch", "v1", "jobs"},
		{"networking.k8s.io", "v1", "ingresses"}, {"coordination.k8s.io", "v1", "leases"},
	}
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	word := func() string {
		const letters = "abcdefghijklmnopqrstuvwxyz"
		b := make([]byte, 4+r.IntN(8))
		for i := range b {
			b[i] = letters[r.IntN(len(letters))]
		}
		return string(b)
	}
	uid := func() string {
		return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.IntN(0x10000), r.IntN(0x1000), 0x8000|r.IntN(0x4000), r.Uint64()&0xffffffffffff)
	}
	ts := func() (string, string) {
		t := time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(time.Hour))))
		return t.Format("2006-01-02T15:04:05.000000Z"), t.Add(time.Duration(r.IntN(50_000)) * time.Microsecond).Format("2006-01-02T15:04:05.000000Z")
	}
	out := make([]template, 0, n)
	for len(out) < n {
		ns := pick(namespaces)
		res := resources[r.IntN(len(resources))]
		name := word() + "-" + word()
		sa := word()
		node := fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", r.IntN(8), r.IntN(255))
		user := map[string]any{
			"username": "system:serviceaccount:" + ns + ":" + sa, "uid": uid(),
			"groups": []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			"extra": map[string][]string{
				"authentication.kubernetes.io/credential-id": {"JTI=" + uid()},
				"authentication.kubernetes.io/node-name":     {node},
				"authentication.kubernetes.io/node-uid":      {uid()},
				"authentication.kubernetes.io/pod-name":      {sa + "-" + word() + "-" + word()},
				"authentication.kubernetes.io/pod-uid":       {uid()},
			},
		}
		path := "/api/" + res.version
		if res.group != "" {
			path = "/apis/" + res.group + "/" + res.version
		}
		objectRef := map[string]any{"resource": res.resource, "namespace": ns, "apiVersion": res.version}
		if res.group != "" {
			objectRef["apiGroup"] = res.group
		}
		received, stage := ts()
		ev := map[string]any{
			"level": "Metadata", "stage": "ResponseComplete", "verb": "get",
			"user": user, "sourceIPs": []string{fmt.Sprintf("10.0.%d.%d", r.IntN(8), r.IntN(255))},
			"userAgent": sa + "/v1.4." + strconv.Itoa(r.IntN(20)) + " (linux/amd64) kubernetes/$Format",
			"objectRef": objectRef, "responseStatus": map[string]any{"metadata": map[string]any{}, "code": 200},
			"requestReceivedTimestamp": received, "stageTimestamp": stage,
			"annotations": map[string]string{
				"authorization.k8s.io/decision": "allow",
				"authorization.k8s.io/reason":   fmt.Sprintf("RBAC: allowed by RoleBinding %q of Role %q to ServiceAccount %q", sa+"/"+ns, sa+"-reader", sa+"/"+ns),
			},
		}
		switch x := r.IntN(100); {
		case x < 60:
			verb := pick([]string{"get", "list", "watch"})
			ev["verb"] = verb
			if verb == "get" {
				objectRef["name"] = name
				ev["requestURI"] = path + "/namespaces/" + ns + "/" + res.resource + "/" + name
			} else {
				ev["requestURI"] = path + "/namespaces/" + ns + "/" + res.resource + "?limit=500&resourceVersion=0"
			}
		case x < 85:
			verb := pick([]string{"create", "patch", "update"})
			ev["verb"], ev["level"] = verb, pick([]string{"Request", "RequestResponse"})
			objectRef["name"] = name
			ev["requestURI"] = path + "/namespaces/" + ns + "/" + res.resource + "/" + name + "?fieldManager=kubectl-client-side-apply"
			ev["user"] = map[string]any{"username": word() + "@example.com", "groups": []string{"platform-admins", "system:authenticated"},
				"extra": map[string][]string{"oidc:iss": {"https://login.example.com"}}}
			ev["userAgent"] = "kubectl/v1.34.2 (linux/amd64) kubernetes/8e1b4c2"
			ev["requestObject"] = map[string]any{
				"kind": "Deployment", "apiVersion": "apps/v1",
				"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]string{"app": name, "team": ns}},
				"spec": map[string]any{"replicas": 1 + r.IntN(5), "template": map[string]any{"spec": map[string]any{"containers": []map[string]any{{
					"name": name, "image": "registry.example.com/" + ns + "/" + name + ":" + fmt.Sprintf("%d.%d.%d", r.IntN(4), r.IntN(30), r.IntN(10)),
					"resources": map[string]any{"limits": map[string]string{"cpu": "500m", "memory": "512Mi"}},
				}}}}},
			}
			ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": 200 + r.IntN(2)}
		default:
			objectRef["resource"], objectRef["name"] = "secrets", name
			delete(objectRef, "apiGroup")
			ev["requestURI"] = "/api/v1/namespaces/" + ns + "/secrets/" + name
			if r.IntN(2) == 0 {
				ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "status": "Failure", "reason": "Forbidden", "code": 403,
					"message": fmt.Sprintf("secrets %q is forbidden: User %q cannot get resource \"secrets\" in API group \"\" in the namespace %q", name, "system:serviceaccount:"+ns+":"+sa, ns)}
				ev["annotations"] = map[string]string{"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}
			}
		}
		b, err := json.Marshal(ev)
		if err != nil {
			panic(err)
		}
		// Put auditID first, as the apiserver does (after level), around a hole.
		b = b[1:] // without '{'
		out = append(out, template{prefix: []byte(`{"auditID":"`), suffix: append([]byte(`",`), b...)})
	}
	return out
}
