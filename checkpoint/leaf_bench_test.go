package checkpoint

import (
	"testing"
	"time"
)

// A realistic 500-byte audit event.
var benchEvent = []byte(`{"id":"9f0c2d7e-5b1a-4c3e-9a8f-2d6b7e1c0a44","time":"2026-11-25T22:31:01.504Z","actor":{"id":"u-1842","name":"alice@example.com","ip":"10.20.30.40"},"action":"secret.read","resource":"prod/db/users","outcome":"success","details":{"request_id":"req-7f3a9c1e2b","user_agent":"kubectl/v1.31.2 (linux/amd64)","namespace":"payments","git_sha":"4e1d2c3b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d","cluster":"eu-west-1-prod","reason":"rotation check","ticket":"OPS-4821","labels":["pci","tier-1"]}}`)

// A Kubernetes audit event of about 1.4 KB as the kube-apiserver writes it:
// its structs' members in declaration order (not canonical), maps sorted.
var benchK8sEvent = []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5b1f3c7e-2d4a-4f6b-9c8e-1a2b3c4d5e6f","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/pods/checkout-7d9f8b6c5-x2kqp","verb":"get","user":{"username":"system:serviceaccount:payments:checkout","uid":"8e2c4a6b-1f3d-4b5e-9a7c-0d2e4f6a8b1c","groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=3f9a1c2e-7b4d-4e6f-8a1b-2c3d4e5f6a7b"],"authentication.kubernetes.io/node-name":["ip-10-0-3-17.eu-west-1.compute.internal"],"authentication.kubernetes.io/node-uid":["c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f"],"authentication.kubernetes.io/pod-name":["checkout-5c7d8e9f0a-b1c2d"],"authentication.kubernetes.io/pod-uid":["9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"]}},"sourceIPs":["10.0.3.17"],"userAgent":"checkout/v1.4.12 (linux/amd64) kubernetes/$Format","objectRef":{"resource":"pods","namespace":"payments","name":"checkout-7d9f8b6c5-x2kqp","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-25T22:31:01.504122Z","stageTimestamp":"2026-11-25T22:31:01.507310Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"checkout/payments\" of Role \"checkout-reader\" to ServiceAccount \"checkout/payments\""}}`)

// BenchmarkAppendEventLeaf is one event's leaf: the event checked as
// I-JSON and canonicalized, wrapped and stamped (go test -run X -bench
// AppendEventLeaf ./checkpoint).
func BenchmarkAppendEventLeaf(b *testing.B) {
	for _, bc := range []struct {
		name  string
		event []byte
	}{{"event", benchEvent}, {"k8s", benchK8sEvent}} {
		b.Run(bc.name, func(b *testing.B) {
			now := time.Now()
			buf := make([]byte, 0, 4096)
			b.SetBytes(int64(len(bc.event)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, _, _, err = AppendEventLeaf(buf[:0], bc.event, now, "deploy-bot", ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
