package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// idWidth is the fixed width of every event's "id" value, so that patching the
// id per send never changes an event's size. Layout: ev-<run:8 hex>-<corpus
// index:05d>-<send counter:012d>.
const idWidth = 3 + 8 + 1 + 5 + 1 + 12

// idPlaceholder fills the id in the corpus templates until a send patches it.
var idPlaceholder = strings.Repeat("0", idWidth)

// template is one corpus event serialised once, with the byte offset of its id
// value so that every send can stamp a unique id without re-encoding.
type template struct {
	body  []byte // compact JSON object, no trailing newline
	idOff int    // offset of the first byte of the id value in body
	// actorOff is the offset of the actor number's digits in
	// "name":"user-NNNN" (-1 without --actors); actors and actorWidth
	// are --actors and its digits.
	actorOff, actors, actorWidth int
}

// spread makes the corpus's actors, actions and resources take many values
// (0: the built-in few), so that a search by one of them is selective: with
// actors, every send gets an actor "user-<n>" (zero-padded to a fixed width,
// n a hash of the send counter, uniform over [0, actors)); with actions and
// resources, each corpus event picks one of that many generated names.
type spread struct {
	actors, actions, resources int
}

// stamp writes the event with a unique id into dst (which must have room) and
// returns the filled slice.
func (t *template) appendTo(dst []byte, run string, corpusIdx int, seq uint64) []byte {
	start := len(dst)
	dst = append(dst, t.body...)
	id := dst[start+t.idOff : start+t.idOff+idWidth]
	formatID(id, run, corpusIdx, seq)
	if t.actorOff >= 0 {
		n := mix64(seq) % uint64(t.actors)
		putDigits(dst[start+t.actorOff:start+t.actorOff+t.actorWidth], n)
	}
	return dst
}

// mix64 is SplitMix64's finalizer: the actor of send seq.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// actorName is the name of actor n of --actors total, as loadgen sends it.
func actorName(n, total int) string {
	w := len(strconv.Itoa(max(total-1, 0)))
	return fmt.Sprintf("user-%0*d", w, n)
}

// spreadAction is generated action i: ten kinds of object times five verbs,
// then numbered rounds of them.
func spreadAction(i int) string {
	objs := []string{"secret", "deploy", "firewall", "iam.role", "db", "bucket", "k8s.pod", "ssh.session", "certificate", "pipeline"}
	verbs := []string{"read", "create", "update", "delete", "list"}
	a := objs[i%len(objs)] + "." + verbs[(i/len(objs))%len(verbs)]
	if r := i / (len(objs) * len(verbs)); r > 0 {
		a += fmt.Sprintf(".r%d", r)
	}
	return a
}

// spreadResource is generated resource i: "<env>/<kind>/<name>-NNN", e.g.
// prod/db/shard-017 (three environments, eight kinds, then numbered names).
func spreadResource(i int) string {
	envs := []string{"prod", "staging", "dev"}
	kinds := []struct{ kind, name string }{
		{"db", "shard"}, {"vault/kv", "secret"}, {"k8s/deploy", "app"}, {"s3", "bucket"},
		{"hosts", "node"}, {"iam/role", "role"}, {"flags", "flag"}, {"pki", "cert"},
	}
	k := kinds[(i/len(envs))%len(kinds)]
	return fmt.Sprintf("%s/%s/%s-%03d", envs[i%len(envs)], k.kind, k.name, i/(len(envs)*len(kinds)))
}

// formatID writes ev-RRRRRRRR-CCCCC-SSSSSSSSSSSS into id (len idWidth) without allocating.
func formatID(id []byte, run string, corpusIdx int, seq uint64) {
	copy(id, "ev-")
	copy(id[3:11], run)
	id[11] = '-'
	putDigits(id[12:17], uint64(corpusIdx))
	id[17] = '-'
	putDigits(id[18:30], seq)
}

func putDigits(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

type actor struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	IP   string `json:"ip"`
}

// event is DESIGN.md's event shape; field order is kept stable by the struct.
type event struct {
	ID       string         `json:"id"`
	Time     string         `json:"time"`
	Actor    actor          `json:"actor"`
	Action   string         `json:"action"`
	Resource string         `json:"resource"`
	Outcome  string         `json:"outcome"`
	Details  map[string]any `json:"details"`
}

var people = []struct{ id, name string }{
	{"u-1001", "alice@example.com"}, {"u-1002", "bob@example.com"}, {"u-1003", "carol@example.com"},
	{"u-1004", "dave@example.com"}, {"u-1005", "erin@example.com"}, {"u-1006", "frank@example.com"},
	{"u-1007", "grace@example.com"}, {"u-1008", "heidi@example.com"}, {"sa-ci", "ci-runner@build.example.com"},
	{"sa-argo", "system:serviceaccount:argocd:argocd-application-controller"},
	{"sa-tf", "terraform-cloud@infra.example.com"}, {"sa-backup", "system:serviceaccount:ops:velero"},
}

var actions = []struct{ action, resource string }{
	{"secret.read", "prod/vault/kv/payments/stripe-api-key"},
	{"secret.read", "prod/k8s/payments-prod/secret/db-credentials"},
	{"secret.update", "staging/vault/kv/search/opensearch-admin"},
	{"deploy.create", "prod/k8s/checkout/deployment/checkout-api"},
	{"deploy.rollback", "prod/k8s/search/deployment/search-indexer"},
	{"firewall.update", "prod/gcp/vpc-main/firewall/allow-office-ssh"},
	{"firewall.delete", "staging/aws/sg-0a12b34c56d78e90f"},
	{"iam.role.grant", "prod/aws/iam/role/OrganizationAccountAccessRole"},
	{"iam.role.revoke", "prod/gcp/projects/billing-prod/roles/owner"},
	{"iam.key.create", "prod/aws/iam/user/ci-deployer/access-key"},
	{"db.query", "prod/db/users"},
	{"db.export", "prod/db/orders"},
	{"db.schema.migrate", "prod/db/ledger"},
	{"ssh.session.start", "prod/hosts/bastion-eu-west-1a"},
	{"k8s.exec", "prod/k8s/payments-prod/pod/payments-api-7d9f8b6c5-x2kqp"},
	{"bucket.policy.update", "prod/s3/customer-exports"},
	{"feature_flag.toggle", "prod/flags/new-checkout-flow"},
	{"pipeline.run", "ci/github/tidemark/release.yml"},
	{"certificate.issue", "prod/pki/intermediate/api.example.com"},
	{"user.mfa.disable", "idp/okta/users/u-1004"},
}

var userAgents = []string{
	"kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
	"terraform/1.8.5 (+https://www.terraform.io) terraform-provider-aws/5.54.1",
	"aws-cli/2.15.58 Python/3.11.8 Linux/6.1.0-21-cloud-amd64 exe/x86_64.debian.12",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"argocd-application-controller/v2.11.3+e8f4c5a",
	"Vault/1.17.1 (+https://www.vaultproject.io/; go1.22.4)",
	"GitHub-Hookshot/7c5b2e1 actions-runner/2.317.0",
	"google-cloud-sdk gcloud/481.0.0 command/gcloud.compute.firewall-rules.update",
}

var namespaces = []string{"payments-prod", "checkout", "search", "ops", "argocd", "kube-system", "ledger", "identity"}
var clusters = []string{"gke-prod-eu-west1", "eks-prod-us-east-1", "aks-staging-weu", "gke-ops-europe-north1"}
var regions = []string{"eu-west-1", "us-east-1", "europe-west1", "us-central1", "ap-southeast-2"}
var reasons = []string{
	"scheduled rotation", "incident response INC-4821", "release train 2026.03", "on-call break-glass",
	"customer support escalation", "quarterly access review", "hotfix for checkout latency", "automated drift correction",
}
var words = strings.Fields(`change approved by the change advisory board ticket linked rollout window
verified canary healthy metrics nominal error budget within policy owner notified via pager runbook
step completed audit trail retained ninety days compliance scope soc2 pci reviewer signed off
terraform plan applied without drift kubernetes manifest synced from git repository main branch`)

// buildCorpus makes n deterministic events of about size bytes each (JSON,
// compact, with a placeholder id) from the given seed.
func buildCorpus(n, size int, seed uint64, sp spread) ([]template, error) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	base := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	out := make([]template, n)
	for i := range out {
		ev := randomEvent(r, base.Add(time.Duration(i)*1379*time.Millisecond))
		var actorPH string
		if sp.actors > 0 {
			actorPH = actorName(0, sp.actors)
			ev.Actor.Name = actorPH
		}
		if sp.actions > 0 {
			ev.Action = spreadAction(r.IntN(sp.actions))
		}
		if sp.resources > 0 {
			ev.Resource = spreadResource(r.IntN(sp.resources))
		}
		b, err := fitEvent(ev, r, size)
		if err != nil {
			return nil, err
		}
		off := bytes.Index(b, []byte(`"id":"`+idPlaceholder+`"`))
		if off < 0 {
			return nil, fmt.Errorf("corpus: id placeholder not found")
		}
		out[i] = template{body: b, idOff: off + len(`"id":"`), actorOff: -1}
		if sp.actors > 0 {
			aoff := bytes.Index(b, []byte(`"name":"`+actorPH+`"`))
			if aoff < 0 {
				return nil, fmt.Errorf("corpus: actor placeholder not found")
			}
			out[i].actorOff = aoff + len(`"name":"user-`)
			out[i].actors, out[i].actorWidth = sp.actors, len(actorPH)-len("user-")
		}
	}
	return out, nil
}

func hexString(r *rand.Rand, nbytes int) string {
	b := make([]byte, nbytes)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return hex.EncodeToString(b)
}

func uuid(r *rand.Rand) string {
	h := hexString(r, 16)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func randomEvent(r *rand.Rand, t time.Time) event {
	p := pick(r, people)
	a := pick(r, actions)
	outcome := "success"
	switch x := r.IntN(100); {
	case x < 8:
		outcome = "failure"
	case x < 13:
		outcome = "denied"
	}
	ip := fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), 1+r.IntN(254))
	d := map[string]any{
		"request_id":  uuid(r),
		"user_agent":  pick(r, userAgents),
		"namespace":   pick(r, namespaces),
		"cluster":     pick(r, clusters),
		"region":      pick(r, regions),
		"git_sha":     hexString(r, 20),
		"trace_id":    hexString(r, 16),
		"session_id":  "sess_" + hexString(r, 12),
		"mfa":         r.IntN(10) != 0,
		"ticket":      fmt.Sprintf("CHG-%05d", r.IntN(100000)),
		"reason":      pick(r, reasons),
		"http_status": []int{200, 200, 200, 201, 204, 403, 409, 500}[r.IntN(8)],
		"duration_ms": r.IntN(2500),
	}
	return event{
		ID:       idPlaceholder,
		Time:     t.Format("2006-01-02T15:04:05.000Z07:00"),
		Actor:    actor{ID: p.id, Name: p.name, IP: ip},
		Action:   a.action,
		Resource: a.resource,
		Outcome:  outcome,
		Details:  d,
	}
}

// dropOrder lists detail fields removed, in order, when the event is too big for size.
var dropOrder = []string{"user_agent", "trace_id", "session_id", "git_sha", "reason", "cluster", "request_id", "ticket", "region", "namespace", "http_status", "duration_ms", "mfa"}

// fitEvent encodes ev at size bytes (exactly, when size is at least the
// event's minimal encoding): it drops detail fields while the event is too big
// and pads details.message with realistic words to reach size.
func fitEvent(ev event, r *rand.Rand, size int) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	for _, k := range dropOrder {
		if len(b) <= size {
			break
		}
		delete(ev.Details, k)
		if b, err = json.Marshal(ev); err != nil {
			return nil, err
		}
	}
	// `,"message":""` costs 13 bytes (14 minus the comma when details is empty).
	over := 13
	if len(ev.Details) == 0 {
		over = 12
	}
	room := size - len(b) - over
	if room <= 0 {
		return b, nil // as small as this event gets
	}
	var sb strings.Builder
	for sb.Len() < room {
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(pick(r, words))
	}
	ev.Details["message"] = sb.String()[:room]
	return json.Marshal(ev)
}
