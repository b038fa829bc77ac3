package search

import (
	"strings"
	"testing"
)

func TestExtractFindsFieldsInTheShapesEventsHave(t *testing.T) {
	for _, c := range []struct {
		name, event string
		want        Fields
	}{
		{"tidemark string actor", `{"actor":"alice","action":"secret.read","resource":"prod/db/users","outcome":"success"}`,
			Fields{Actor: "alice", Action: "secret.read", Resource: "prod/db/users", Outcome: "success"}},
		{"tidemark actor object", `{"actor":{"id":"u-1","name":"alice","ip":"10.0.0.1"},"action":"deploy"}`,
			Fields{Actor: "alice", Action: "deploy"}},
		{"tidemark actor id only", `{"actor":{"id":"u-1"}}`, Fields{Actor: "u-1"}},
		{"kubernetes denied", `{"kind":"Event","verb":"get","user":{"username":"bob","groups":["dev"]},"objectRef":{"resource":"secrets","namespace":"prod","name":"db"},"responseStatus":{"code":403},"requestURI":"/api/v1/namespaces/prod/secrets/db"}`,
			Fields{Actor: "bob", Action: "get", Resource: "prod/secrets/db", Outcome: "denied"}},
		{"kubernetes subresource created", `{"verb":"create","user":{"username":"system:serviceaccount:ci:deployer"},"objectRef":{"resource":"pods","namespace":"ci","name":"p","subresource":"exec"},"responseStatus":{"code":201}}`,
			Fields{Actor: "system:serviceaccount:ci:deployer", Action: "create", Resource: "ci/pods/p/exec", Outcome: "success"}},
		{"kubernetes non-resource failure", `{"verb":"get","user":{"username":"carol"},"requestURI":"/healthz","responseStatus":{"code":500}}`,
			Fields{Actor: "carol", Action: "get", Resource: "/healthz", Outcome: "failure"}},
		{"opentelemetry", `{"attributes":{"enduser.id":"alice","event.outcome":"failure","resource":"vault/db"},"eventName":"secret.read","resource":{"attributes":{"service.name":"vault"}}}`,
			Fields{Actor: "alice", Action: "secret.read", Resource: "vault/db", Outcome: "failure"}},
		{"elastic common schema", `{"user":{"name":"dave"},"event":{"action":"user-login","outcome":"success"}}`,
			Fields{Actor: "dave", Action: "user-login", Outcome: "success"}},
		{"cloudtrail denied", `{"eventSource":"s3.amazonaws.com","eventName":"GetObject","userIdentity":{"arn":"arn:aws:iam::1:user/eve"},"errorCode":"AccessDenied"}`,
			Fields{Actor: "arn:aws:iam::1:user/eve", Action: "GetObject", Outcome: "denied"}},
		{"cloudtrail success", `{"eventSource":"iam.amazonaws.com","eventName":"CreateUser","userIdentity":{"userName":"root"}}`,
			Fields{Actor: "root", Action: "CreateUser", Outcome: "success"}},
		{"vault audit response", `{"type":"response","auth":{"display_name":"kubernetes-payments-api"},"request":{"operation":"read","path":"database/creds/payments"},"error":"1 error occurred: permission denied"}`,
			Fields{Actor: "kubernetes-payments-api", Action: "read", Resource: "database/creds/payments", Outcome: "denied"}},
		{"syslog-ng record", `{"PROGRAM":"sudo","HOST":"bastion-1","MESSAGE":"alice : USER=root ; COMMAND=/usr/bin/systemctl restart nginx"}`,
			Fields{Action: "sudo", Resource: "bastion-1"}},
		{"fluent bit record", `{"log":"...","kubernetes":{"namespace_name":"vault","pod_name":"vault-0"}}`,
			Fields{Resource: "vault/vault-0"}},
		{"numbers are not names", `{"actor":7,"action":["a"],"resource":{"x":1}}`, Fields{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Extract([]byte(c.event), nil)
			got.Text = ""
			if got != c.want {
				t.Errorf("Extract(%s)\n got %+v\nwant %+v", c.event, got, c.want)
			}
		})
	}
	if f := Extract([]byte(`[1,2]`), nil); f != (Fields{}) {
		t.Errorf("an array has fields: %+v", f)
	}
}

func TestMappingComesBeforeTheBuiltInShapes(t *testing.T) {
	m, err := ParseMapping([]byte("# Okta\nactor /actor/alternateId\naction /eventType\nresource /target/0/alternate~1Id\noutcome /outcome/result\n"))
	if err != nil {
		t.Fatal(err)
	}
	ev := `{"actor":{"alternateId":"amy@example.com","name":"Amy"},"eventType":"user.session.start","target":[{"alternate/Id":"app-1"}],"outcome":{"result":"SUCCESS"}}`
	got := Extract([]byte(ev), m)
	want := Fields{Actor: "amy@example.com", Action: "user.session.start", Resource: "app-1", Outcome: "SUCCESS"}
	got.Text = ""
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// A pointer that names nothing falls through to the built-in shapes.
	if got := Extract([]byte(`{"actor":"bob"}`), m); got.Actor != "bob" {
		t.Fatalf("fallback: actor %q", got.Actor)
	}
	for _, bad := range []string{"actor", "who /a", "actor a/b", "actor /a~2", "actor /a /b"} {
		if _, err := ParseMapping([]byte(bad)); err == nil {
			t.Errorf("ParseMapping(%q) accepted", bad)
		}
	}
}

func TestTextHoldsStringValuesAndIsBounded(t *testing.T) {
	f := Extract([]byte(`{"b":"world","a":{"x":"hello"},"n":12345}`), nil)
	if f.Text != "hello world" {
		t.Fatalf("text %q", f.Text)
	}
	big := `{"a":"` + strings.Repeat("é", MaxText) + `"}`
	if f := Extract([]byte(big), nil); len(f.Text) > MaxText || !strings.HasPrefix(f.Text, "éé") || f.Text[len(f.Text)-2:] != "é" {
		t.Fatalf("text of %d bytes, or cut inside a character", len(f.Text))
	}
	if c := Cut(strings.Repeat("é", MaxValue)); len(c) > MaxValue || !strings.HasSuffix(c, "é") {
		t.Fatalf("Cut: %d bytes, ends %q", len(c), c[len(c)-2:])
	}
}
