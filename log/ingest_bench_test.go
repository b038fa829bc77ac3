package log

import (
	"bytes"
	"fmt"
	"testing"
)

// benchNDJSON is a body of n events of about 500 bytes, each with its own
// "id", shaped as bench/loadgen makes them (members in struct order).
func benchNDJSON(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"id":"ev-1a2b3c4d-%05d-%012d","time":"2026-03-02T09:00:01.379Z","actor":{"id":"u-1003","name":"carol@example.com","ip":"10.20.30.%d"},"action":"secret.read","resource":"prod/vault/kv/payments/stripe-api-key","outcome":"success","details":{"cluster":"gke-prod-eu-west1","git_sha":"4e1d2c3b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d","message":"change approved by the change advisory board ticket linked rollout window verified canary healthy metrics nominal","namespace":"payments-prod","reason":"scheduled rotation","region":"eu-west-1","request_id":"req-7f3a9c1e2b","ticket":"OPS-4821","user_agent":"kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"}}`+"\n", i%4096, i, i%256)
	}
	return b.Bytes()
}

// benchEventList is an audit.k8s.io/v1 EventList of n events of about 1.4
// KB as the kube-apiserver writes them (struct members in declaration
// order, maps sorted), each with its own auditID.
func benchEventList(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5b1f3c7e-2d4a-4f6b-9c8e-%012d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/pods/checkout-7d9f8b6c5-x2kqp","verb":"get","user":{"username":"system:serviceaccount:payments:checkout","uid":"8e2c4a6b-1f3d-4b5e-9a7c-0d2e4f6a8b1c","groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=3f9a1c2e-7b4d-4e6f-8a1b-2c3d4e5f6a7b"],"authentication.kubernetes.io/node-name":["ip-10-0-3-17.eu-west-1.compute.internal"],"authentication.kubernetes.io/node-uid":["c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f"],"authentication.kubernetes.io/pod-name":["checkout-5c7d8e9f0a-b1c2d"],"authentication.kubernetes.io/pod-uid":["9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"]}},"sourceIPs":["10.0.3.17"],"userAgent":"checkout/v1.4.12 (linux/amd64) kubernetes/$Format","objectRef":{"resource":"pods","namespace":"payments","name":"checkout-7d9f8b6c5-x2kqp","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-25T22:31:01.504122Z","stageTimestamp":"2026-11-25T22:31:01.507310Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"checkout/payments\" of Role \"checkout-reader\" to ServiceAccount \"checkout/payments\""}}`, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// BenchmarkIngestNDJSON is the CPU work of one POST /v1/events with 1,000
// NDJSON events between reading the body and the idempotency index:
// counting, splitting and building every leaf (go test -run X -bench
// Ingest ./log).
func BenchmarkIngestNDJSON(b *testing.B) {
	body := benchNDJSON(1000)
	s := &Server{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if countLines(body) != 1000 {
			b.Fatal("count")
		}
		if _, err := s.buildLeaves("writer", requestEvents("", true, "line", splitLines(body)), appendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngestK8s is the same for one POST /v1/k8s/audit with an
// EventList of 400 events: counting the items, splitting the list, building
// every leaf.
func BenchmarkIngestK8s(b *testing.B) {
	body := benchEventList(400)
	s := &Server{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := k8sItemCount(body); err != nil || n != 400 {
			b.Fatal(n, err)
		}
		evs, err := k8sEvents(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.buildLeaves("apiserver", evs, appendOptions{truncate: true, notIJSON: true, keep: k8sKeep, endpoint: "k8s"}); err != nil {
			b.Fatal(err)
		}
	}
}
