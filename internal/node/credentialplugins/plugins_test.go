package credentialplugins

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"pullgate.dev/pullgate/pkg/credentials"
)

// A plugin that, like pullgate's, answers with the service-account token it is given.
const tokenPlugin = `#!/bin/sh
token=$(sed -n 's/.*"serviceAccountToken":"\([^"]*\)".*/\1/p')
printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"0s","auth":{"registry.example.com":{"username":"serviceaccount","password":"%s"}}}' "$token"
`

// A node-wide plugin, as ECR's: the node's own credential, no service account.
const nodePlugin = `#!/bin/sh
cat >/dev/null
printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{"ecr.example.com":{"username":"AWS","password":"from-the-node"}}}'
`

const config = `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: token-plugin
    matchImages: ["registry.example.com"]
    defaultCacheDuration: 1m
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    tokenAttributes:
      serviceAccountTokenAudience: pullgate-registry
      requireServiceAccount: true
      cacheType: Token
  - name: node-plugin
    matchImages: ["ecr.example.com"]
    defaultCacheDuration: 1m
    apiVersion: credentialprovider.kubelet.k8s.io/v1
`

// The kubelet's plugin registry is process-wide: every case runs on one registration.
func TestPlugins(t *testing.T) {
	dir := t.TempDir()
	for name, script := range map[string]string{"token-plugin": tokenPlugin, "node-plugin": nodePlugin} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "default", UID: "sa-uid"}})
	var requests []*authenticationv1.TokenRequest
	client.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		requests = append(requests, tr)
		tr.Status = authenticationv1.TokenRequestStatus{
			Token:               fmt.Sprintf("token-for-%s-%s", tr.Spec.BoundObjectRef.Name, strings.Join(tr.Spec.Audiences, ",")),
			ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour)),
		}
		return true, tr, nil
	})
	plugins, err := Register(configFile, dir, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Register(configFile, dir, client); err == nil {
		t.Error("a second registration in one process was accepted")
	}
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "app", UID: "pod-uid"}}

	t.Run("the pod's own token, bound to the pod, for the configured audience", func(t *testing.T) {
		got, err := plugins.ForPod(pod).Candidates(ctx, "registry.example.com/a/app:v1")
		if err != nil || got.Problems != nil || len(got.List) != 1 {
			t.Fatalf("%+v, %v", got, err)
		}
		c := got.List[0]
		if c.Password != "token-for-app-pullgate-registry" || c.ID != credentials.ServiceAccountID("a", "default", "sa-uid") || c.Identity != "system:serviceaccount:a:default" {
			t.Errorf("candidate %+v", c)
		}
		if len(requests) != 1 || requests[0].Spec.BoundObjectRef.UID != "pod-uid" {
			t.Errorf("token requests %+v", requests)
		}
		// The kubelet's token manager keeps the token: no second request.
		if _, err := plugins.ForPod(pod).Candidates(ctx, "registry.example.com/a/other:v1"); err != nil || len(requests) != 1 {
			t.Errorf("%d token requests for one pod", len(requests))
		}
	})

	t.Run("a node-wide plugin's credential is the node's", func(t *testing.T) {
		got, _ := plugins.ForPod(pod).Candidates(ctx, "ecr.example.com/team/app:v1")
		if len(got.List) != 1 || got.List[0].Username != "AWS" || got.List[0].ID != credentials.NodeProviderID || got.List[0].Identity != "" {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("an image no plugin matches gets nothing", func(t *testing.T) {
		got, _ := plugins.ForPod(pod).Candidates(ctx, "docker.io/library/busybox")
		if len(got.List) != 0 || got.Problems != nil {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("a missing service account is a problem named, not a credential", func(t *testing.T) {
		ghost := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "ghost", UID: "ghost-uid"}, Spec: corev1.PodSpec{ServiceAccountName: "ghost"}}
		got, _ := plugins.ForPod(ghost).Candidates(ctx, "registry.example.com/a/app:v1")
		if len(got.List) != 0 || got.Problems == nil || !strings.Contains(got.Problems.Error(), "service account a/ghost could not be read") {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("forgetting a pod drops its token", func(t *testing.T) {
		plugins.Forget(pod.UID)
		before := len(requests)
		if _, err := plugins.ForPod(pod).Candidates(ctx, "registry.example.com/a/app:v1"); err != nil || len(requests) != before+1 {
			t.Errorf("%d token requests after the pod was forgotten, want %d", len(requests), before+1)
		}
	})
}
