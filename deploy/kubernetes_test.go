package deploy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/tidemark/tidemark/internal/testpki"
	tlog "github.com/tidemark/tidemark/log"
)

const (
	k8sDir         = "kubernetes"
	auditPolicy    = "kubernetes/apiserver/audit-policy.yaml"
	auditWebhookKC = "kubernetes/apiserver/audit-webhook.kubeconfig"
)

// obj is one YAML document, through JSON.
type obj = map[string]any

func str(m obj, keys ...string) string {
	v := dig(m, keys...)
	s, _ := v.(string)
	return s
}

func dig(m obj, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func list(v any) []obj {
	l, _ := v.([]any)
	var out []obj
	for _, x := range l {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func strs(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

type k8sDoc struct {
	file string
	obj  obj
}

// k8sDocs parses every document of every file under deploy/kubernetes.
func k8sDocs(t *testing.T) []k8sDoc {
	t.Helper()
	var docs []k8sDoc
	err := filepath.WalkDir(k8sDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".kubeconfig") {
			t.Errorf("%s: not .yaml or .kubeconfig", p)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, part := range strings.Split("\n"+string(b), "\n---\n") {
			if strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			j, err := yaml.YAMLToJSON([]byte(part))
			if err != nil {
				t.Errorf("%s, document %d: %v", p, i+1, err)
				continue
			}
			var m obj
			if err := json.Unmarshal(j, &m); err != nil || m == nil {
				t.Errorf("%s, document %d: not a mapping: %v", p, i+1, err)
				continue
			}
			docs = append(docs, k8sDoc{p, m})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) < 10 {
		t.Fatalf("found %d documents under %s", len(docs), k8sDir)
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// probePaths are the paths each subcommand serves on its admin (or
// metrics) port.
var probePaths = map[string][]string{
	"log":     {"/healthz", "/readyz", "/metrics"},
	"witness": {"/healthz", "/metrics"},
	"audit":   {"/metrics"},
}

type workload struct {
	doc    k8sDoc
	labels map[string]string
	ports  map[string]bool // container port names
}

// TestKubernetesManifests checks every manifest: its identity, the flags
// and variables its containers give tidemark, their probes and hardening,
// and that Services, ServiceMonitors and kustomizations refer to things
// that exist.
func TestKubernetesManifests(t *testing.T) {
	docs := k8sDocs(t)
	var workloads []workload
	var services []k8sDoc
	for _, d := range docs {
		kind := str(d.obj, "kind")
		if str(d.obj, "apiVersion") == "" || kind == "" {
			t.Errorf("%s: a document without apiVersion or kind", d.file)
			continue
		}
		// The apiserver's own files are not API objects.
		if kind != "Config" && kind != "Policy" && str(d.obj, "metadata", "name") == "" {
			t.Errorf("%s: %s without metadata.name", d.file, kind)
		}
		switch kind {
		case "StatefulSet", "Deployment":
			workloads = append(workloads, checkWorkload(t, d))
		case "Service":
			services = append(services, d)
		case "Kustomization":
			for _, r := range strs(d.obj["resources"]) {
				if _, err := os.Stat(filepath.Join(filepath.Dir(d.file), r)); err != nil {
					t.Errorf("%s: resource %s: %v", d.file, r, err)
				}
			}
		}
	}
	selects := func(sel map[string]any, labels map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	for _, s := range services {
		name := str(s.obj, "metadata", "name")
		sel, _ := dig(s.obj, "spec", "selector").(map[string]any)
		var w *workload
		for i := range workloads {
			if selects(sel, workloads[i].labels) {
				w = &workloads[i]
			}
		}
		if w == nil {
			t.Errorf("%s: Service %s selects %v, which no workload's pods carry", s.file, name, sel)
			continue
		}
		for _, p := range list(dig(s.obj, "spec", "ports")) {
			if tp, ok := p["targetPort"].(string); ok && !w.ports[tp] {
				t.Errorf("%s: Service %s targets port %q, which %s does not declare", s.file, name, tp, str(w.doc.obj, "metadata", "name"))
			}
		}
	}
	for _, d := range docs {
		if str(d.obj, "kind") != "ServiceMonitor" {
			continue
		}
		name := str(d.obj, "metadata", "name")
		if str(d.obj, "apiVersion") != "monitoring.coreos.com/v1" {
			t.Errorf("%s: ServiceMonitor %s is not monitoring.coreos.com/v1", d.file, name)
		}
		var names []string
		if ml, ok := dig(d.obj, "spec", "selector", "matchLabels").(map[string]any); ok {
			if v, ok := ml["app.kubernetes.io/name"].(string); ok {
				names = append(names, v)
			}
		}
		for _, e := range list(dig(d.obj, "spec", "selector", "matchExpressions")) {
			if e["key"] == "app.kubernetes.io/name" && e["operator"] == "In" {
				names = append(names, strs(e["values"])...)
			}
		}
		if len(names) == 0 {
			t.Errorf("%s: ServiceMonitor %s selects no app.kubernetes.io/name", d.file, name)
		}
		for _, n := range names {
			var svc obj
			for _, s := range services {
				if str(s.obj, "metadata", "labels", "app.kubernetes.io/name") == n {
					svc = s.obj
				}
			}
			if svc == nil {
				t.Errorf("%s: ServiceMonitor %s selects %s, and no Service is labelled so", d.file, name, n)
				continue
			}
			for _, e := range list(dig(d.obj, "spec", "endpoints")) {
				found := false
				for _, p := range list(dig(svc, "spec", "ports")) {
					found = found || p["name"] == e["port"]
				}
				if !found {
					t.Errorf("%s: ServiceMonitor %s scrapes port %v, which Service %s lacks", d.file, name, e["port"], n)
				}
				if e["path"] != "/metrics" {
					t.Errorf("%s: ServiceMonitor %s scrapes %v, not /metrics", d.file, name, e["path"])
				}
			}
		}
	}
}

// checkWorkload checks a StatefulSet's or Deployment's pod template.
func checkWorkload(t *testing.T, d k8sDoc) workload {
	t.Helper()
	name := str(d.obj, "metadata", "name")
	where := d.file + ": " + name
	w := workload{doc: d, labels: map[string]string{}, ports: map[string]bool{}}
	for k, v := range dig(d.obj, "spec", "template", "metadata", "labels").(map[string]any) {
		w.labels[k], _ = v.(string)
	}
	sel, _ := dig(d.obj, "spec", "selector", "matchLabels").(map[string]any)
	for k, v := range sel {
		if w.labels[k] != v {
			t.Errorf("%s: selector %s=%v does not match the pod template's labels", where, k, v)
		}
	}
	pod, _ := dig(d.obj, "spec", "template", "spec").(map[string]any)
	if dig(pod, "securityContext", "runAsNonRoot") != true {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", where)
	}
	if str(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("%s: pod seccompProfile is not RuntimeDefault", where)
	}
	volumes := map[string]bool{}
	for _, v := range list(pod["volumes"]) {
		volumes[str(v, "name")] = true
	}
	for _, v := range list(dig(d.obj, "spec", "volumeClaimTemplates")) {
		volumes[str(v, "metadata", "name")] = true
	}
	containers := list(pod["containers"])
	if len(containers) == 0 {
		t.Fatalf("%s: no containers", where)
	}
	for _, c := range containers {
		cw := where + "/" + str(c, "name")
		if str(c, "image") == "" {
			t.Errorf("%s: no image", cw)
		}
		cmd := strs(c["command"])
		args := strs(c["args"])
		if len(cmd) != 1 || path.Base(cmd[0]) != "tidemark" || len(args) == 0 {
			t.Errorf("%s: want command [.../tidemark] and args [SUBCOMMAND ...], have %q %q", cw, cmd, args)
			continue
		}
		sub := args[0]
		paths, ok := probePaths[sub]
		if !ok {
			t.Errorf("%s: unknown subcommand %q", cw, sub)
			continue
		}
		flags := helpFlags(t, sub)
		for _, a := range args[1:] {
			f, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !strings.HasPrefix(a, "-") || !flags[f] {
				t.Errorf("%s: argument %q is not a flag of tidemark %s", cw, a, sub)
			}
		}
		for _, e := range list(c["env"]) {
			n := str(e, "name")
			if !strings.HasPrefix(n, "TIDEMARK_") {
				continue
			}
			f, ok := envFlag(sub, n)
			if !ok || !flags[f] {
				t.Errorf("%s: %s is not a variable tidemark %s reads", cw, n, sub)
			}
		}
		for _, p := range list(c["ports"]) {
			w.ports[str(p, "name")] = true
		}
		probes := 0
		for _, probe := range []string{"livenessProbe", "readinessProbe"} {
			p, _ := c[probe].(map[string]any)
			if p == nil {
				continue
			}
			probes++
			if pp := str(p, "httpGet", "path"); !slices.Contains(paths, pp) {
				t.Errorf("%s: %s on %q, which tidemark %s does not serve (%v)", cw, probe, pp, sub, paths)
			}
			if port, _ := dig(p, "httpGet", "port").(string); !w.ports[port] {
				t.Errorf("%s: %s on port %v, not a declared port name", cw, probe, dig(p, "httpGet", "port"))
			}
		}
		if probes == 0 {
			t.Errorf("%s: no probe", cw)
		}
		if sub == "log" {
			if str(c, "livenessProbe", "httpGet", "path") != "/healthz" || str(c, "readinessProbe", "httpGet", "path") != "/readyz" {
				t.Errorf("%s: the log's probes must be /healthz (liveness) and /readyz (readiness)", cw)
			}
			if g, _ := pod["terminationGracePeriodSeconds"].(float64); g < 60 {
				t.Errorf("%s: terminationGracePeriodSeconds %v < 60 cuts the log's graceful stop short", cw, g)
			}
		}
		sc, _ := c["securityContext"].(map[string]any)
		if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false ||
			!slices.Equal(strs(dig(sc, "capabilities", "drop")), []string{"ALL"}) {
			t.Errorf("%s: securityContext must have readOnlyRootFilesystem, no privilege escalation, capabilities drop [ALL]: %v", cw, sc)
		}
		if dig(c, "resources", "requests", "memory") == nil || dig(c, "resources", "limits", "memory") == nil {
			t.Errorf("%s: no memory request and limit", cw)
		}
		for _, m := range list(c["volumeMounts"]) {
			if !volumes[str(m, "name")] {
				t.Errorf("%s: mounts volume %q, which the pod does not have", cw, str(m, "name"))
			}
		}
	}
	return w
}

// auditPolicyDoc is audit.k8s.io/v1 Policy, strictly: an unknown field is
// a typo the apiserver would refuse.
type auditPolicyDoc struct {
	APIVersion        string   `json:"apiVersion"`
	Kind              string   `json:"kind"`
	OmitStages        []string `json:"omitStages"`
	OmitManagedFields bool     `json:"omitManagedFields"`
	Rules             []struct {
		Level           string   `json:"level"`
		Users           []string `json:"users"`
		UserGroups      []string `json:"userGroups"`
		Verbs           []string `json:"verbs"`
		Namespaces      []string `json:"namespaces"`
		NonResourceURLs []string `json:"nonResourceURLs"`
		OmitStages      []string `json:"omitStages"`
		Resources       []struct {
			Group         string   `json:"group"`
			Resources     []string `json:"resources"`
			ResourceNames []string `json:"resourceNames"`
		} `json:"resources"`
	} `json:"rules"`
}

// TestKubernetesAuditPolicy parses the apiserver's audit policy.
func TestKubernetesAuditPolicy(t *testing.T) {
	b, err := os.ReadFile(auditPolicy)
	if err != nil {
		t.Fatal(err)
	}
	var p auditPolicyDoc
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		t.Fatalf("%s: %v", auditPolicy, err)
	}
	if p.APIVersion != "audit.k8s.io/v1" || p.Kind != "Policy" {
		t.Fatalf("%s: %s %s, want audit.k8s.io/v1 Policy", auditPolicy, p.APIVersion, p.Kind)
	}
	stages := []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
	levels := []string{"None", "Metadata", "Request", "RequestResponse"}
	for _, s := range p.OmitStages {
		if !slices.Contains(stages, s) {
			t.Errorf("omitStages: unknown stage %q", s)
		}
	}
	if len(p.Rules) == 0 {
		t.Fatal("no rules")
	}
	for i, r := range p.Rules {
		if !slices.Contains(levels, r.Level) {
			t.Errorf("rule %d: unknown level %q", i+1, r.Level)
		}
		for _, s := range r.OmitStages {
			if !slices.Contains(stages, s) {
				t.Errorf("rule %d: unknown stage %q", i+1, s)
			}
		}
		if len(r.NonResourceURLs) > 0 && len(r.Resources) > 0 {
			t.Errorf("rule %d: both resources and nonResourceURLs", i+1)
		}
	}
	// Secrets must never be logged with their content: the first rule
	// naming them must be at Metadata or None.
	for i, r := range p.Rules {
		secrets := false
		for _, res := range r.Resources {
			secrets = secrets || (res.Group == "" && slices.Contains(res.Resources, "secrets"))
		}
		if secrets {
			if r.Level != "Metadata" && r.Level != "None" {
				t.Errorf("rule %d logs secrets at %s", i+1, r.Level)
			}
			break
		}
	}
}

type kubeconfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Clusters   []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server               string `json:"server"`
			CertificateAuthority string `json:"certificate-authority"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Token string `json:"token"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	CurrentContext string `json:"current-context"`
}

// webhookConfig returns the current context's server, CA file and token.
func webhookConfig(t *testing.T) (server *url.URL, caFile, token string) {
	t.Helper()
	b, err := os.ReadFile(auditWebhookKC)
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeconfig
	if err := yaml.UnmarshalStrict(b, &kc); err != nil {
		t.Fatalf("%s: %v", auditWebhookKC, err)
	}
	if kc.APIVersion != "v1" || kc.Kind != "Config" {
		t.Fatalf("%s: %s %s, want v1 Config", auditWebhookKC, kc.APIVersion, kc.Kind)
	}
	var cluster, user string
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			cluster, user = c.Context.Cluster, c.Context.User
		}
	}
	for _, c := range kc.Clusters {
		if c.Name == cluster {
			if server, err = url.Parse(c.Cluster.Server); err != nil {
				t.Fatal(err)
			}
			caFile = c.Cluster.CertificateAuthority
		}
	}
	for _, u := range kc.Users {
		if u.Name == user {
			token = u.User.Token
		}
	}
	if server == nil || token == "" || caFile == "" {
		t.Fatalf("%s: current context %q has no cluster with a server and a CA, or no user with a token", auditWebhookKC, kc.CurrentContext)
	}
	if server.Scheme != "https" || server.Path != "/v1/k8s/audit" {
		t.Fatalf("%s: server %s, want https://.../v1/k8s/audit", auditWebhookKC, server)
	}
	return server, caFile, token
}

// TestKubernetesAuditWebhook sends an EventList to a log over TLS the way
// the apiserver does with the webhook kubeconfig: its server's path, a CA
// file trusting the log's certificate, and its bearer token, granted by a
// line of the log's tokens file. Only the host (and the files' contents)
// are the test's.
func TestKubernetesAuditWebhook(t *testing.T) {
	server, _, _ := webhookConfig(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "tidemark CA")
	caFile := ca.WriteCert(t, dir, "tidemark-ca.crt")
	const token = "tdm_kubernetesWebhookTestToken0123456789abcdef"
	tokensFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokensFile, []byte(tlog.TokenLine("kube-apiserver", token)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := tlog.LoadTokens(tokensFile)
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := tlog.LoadKeys(filepath.Join(dir, "log"), nil, "k8s.deploy.tidemark.test/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := tlog.New(context.Background(), tlog.Config{
		Dir: filepath.Join(dir, "log"), Keys: keys, Tokens: tokens,
		CheckpointInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s.Handler(false))
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t)}, MinVersion: tls.VersionTLS12}
	hs.StartTLS()
	t.Cleanup(func() { hs.Close(); s.Close(context.Background()) })

	// The apiserver's client: trusts only the kubeconfig's CA file.
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the CA file")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	u := *server
	u.Host = strings.TrimPrefix(hs.URL, "https://")
	body := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"4f6e5a3c-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get","user":{"username":"alice"},"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"code":200}},
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"4f6e5a3c-0000-4000-8000-000000000002","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/default/deployments","verb":"create","user":{"username":"bob"},"objectRef":{"resource":"deployments","namespace":"default","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"code":201}}]}`)
	post := func(tok string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", u.String(), err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, b := post(""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d %s, want 401", code, b)
	}
	if code, b := post(token); code != http.StatusOK {
		t.Fatalf("with the kubeconfig's token: %d %s, want 200", code, b)
	}
}
