package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"pullgate.dev/pullgate/internal/registry/location"
	"pullgate.dev/pullgate/pkg/credentials"
)

// registry login writes a credential for every name of the registry, as the service
// account with -z, keeping what the file held.
func TestRegistryLogin(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "builder"}})
	if err := location.Publish(ctx, client, location.Info{URL: "http://localhost:5000", Hostnames: []string{"localhost:5000", "127.0.0.1:5000"}}); err != nil {
		t.Fatal(err)
	}
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if name := a.(k8stesting.CreateActionImpl).Name; name != "builder" {
			return true, nil, apierrors.NewNotFound(corev1.Resource("serviceaccounts"), name)
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		if tr.Spec.Audiences[0] != "pullgate-registry" {
			t.Errorf("token for audiences %v", tr.Spec.Audiences)
		}
		tr.Status.Token = "sa-token"
		return true, tr, nil
	})
	dir := t.TempDir()
	file := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(file, []byte(`{"auths":{"quay.io":{"auth":"dTpw"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, out, _ := streams()
	o := &RegistryLoginOptions{IOStreams: s, ServiceAccount: "builder", To: file, Namespace: "b", Client: client}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "system:serviceaccount:b:builder") {
		t.Errorf("output %q", out)
	}
	data, _ := os.ReadFile(file)
	cfg, err := credentials.ParseConfig(data, credentials.Source{Kind: "file", Name: file})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range cfg.Entries {
		got[e.Key] = e.Password
	}
	if got["localhost:5000"] != "sa-token" || got["127.0.0.1:5000"] != "sa-token" || got["quay.io"] != "p" {
		t.Errorf("entries %v", got)
	}
	o.ServiceAccount = "ghost"
	if err := o.Run(ctx); err == nil {
		t.Error("a missing service account logged in")
	}
}

// registry info prints the URL and every name the registry published.
func TestRegistryInfo(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	s, out, _ := streams()
	if err := (&RegistryInfoOptions{IOStreams: s, Client: client}).Run(ctx); err == nil {
		t.Error("info with nothing published succeeded")
	}
	if err := location.Publish(ctx, client, location.Info{URL: "https://r.example", Hostnames: []string{"r.example", "r.internal:5000"}}); err != nil {
		t.Fatal(err)
	}
	if err := (&RegistryInfoOptions{IOStreams: s, Client: client}).Run(ctx); err != nil || out.String() != "URL:       https://r.example\nHostnames: r.example, r.internal:5000\n" {
		t.Errorf("info: %q %v", out, err)
	}
}
