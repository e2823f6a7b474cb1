package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/pkg/credentials"
)

// basicRegistry is go-containerregistry's in-memory registry behind Basic auth for
// user:password, holding a random image at <host>/ns/app:1.
func basicRegistry(t *testing.T, user, password string) string {
	t.Helper()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/ns/app:1")
	if err := remote.Write(ref, img, remote.WithAuth(basicAuth{user, password})); err != nil {
		t.Fatal(err)
	}
	return host + "/ns/app:1"
}

type basicAuth struct{ user, password string }

func (b basicAuth) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: b.user, Password: b.password}, nil
}

// agentFor is an agent of node "n1" on a fake API, with a fake event recorder.
func agentFor(t *testing.T, client *fake.Clientset, cfg Config) (*Agent, *record.FakeRecorder) {
	t.Helper()
	cfg.Client, cfg.NodeName, cfg.ImageDir = client, "n1", t.TempDir()
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := record.NewFakeRecorder(100)
	a.recorder = events
	return a, events
}

// podWith is pod ns/name on n1 pulling image, with imagePullSecrets secrets.
func podWith(ns, name, image string, secrets ...string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent}}},
	}
	for _, s := range secrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return pod
}

func pullSecret(t *testing.T, ns, name, host, user, password string) *corev1.Secret {
	t.Helper()
	data, err := credentials.SetAuth(nil, host, credentials.Credential{Username: user, Password: password}, credentials.Docker)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
}

// sync runs one sync of pod and returns the pod's first container's waiting state.
func syncPod(t *testing.T, a *Agent, client *fake.Clientset, pod *corev1.Pod) corev1.ContainerStateWaiting {
	t.Helper()
	ctx := context.Background()
	if _, err := client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
		if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	current, _ := client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err := a.pods.GetIndexer().Update(current); err != nil {
		t.Fatal(err)
	}
	if _, err := a.sync(ctx, pod.Namespace+"/"+pod.Name); err != nil {
		t.Fatal(err)
	}
	current, _ = client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if len(current.Status.ContainerStatuses) == 0 || current.Status.ContainerStatuses[0].State.Waiting == nil {
		t.Fatalf("pod %s has no container status: %+v", pod.Name, current.Status)
	}
	return *current.Status.ContainerStatuses[0].State.Waiting
}

// KEP-2535: an image on the node goes to a pod that holds the credential it was
// pulled with (same secret, same content), and to no other without asking the
// registry with the pod's own credentials; a rotated secret counts as another.
func TestImageOnTheNodeGoesOnlyToPodsThatMayPullIt(t *testing.T) {
	image := basicRegistry(t, "dev", "right")
	host := strings.SplitN(image, "/", 2)[0]
	client := fake.NewClientset(pullSecret(t, "a", "good", host, "dev", "right"), pullSecret(t, "a", "wrong", host, "dev", "wrong"))
	a, _ := agentFor(t, client, Config{})

	if w := syncPod(t, a, client, podWith("a", "first", image, "good")); w.Reason != ReasonPullOnly {
		t.Fatalf("first pod: %s %s", w.Reason, w.Message)
	}
	if w := syncPod(t, a, client, podWith("a", "same-secret", image, "good")); w.Reason != ReasonPullOnly {
		t.Errorf("a pod with the same secret: %s %s", w.Reason, w.Message)
	}
	w := syncPod(t, a, client, podWith("a", "no-secret", image))
	if w.Reason != ReasonErrImagePull || !strings.Contains(w.Message, "is on this node, but this pod's credentials cannot pull it now") {
		t.Errorf("a pod with no credential: %s %s", w.Reason, w.Message)
	}
	if w := syncPod(t, a, client, podWith("a", "wrong-secret", image, "wrong")); w.Reason != ReasonErrImagePull {
		t.Errorf("a pod with a wrong credential: %s %s", w.Reason, w.Message)
	}
	// The good secret rotated to a wrong password, under the same name.
	rotated := pullSecret(t, "a", "good", host, "dev", "rotated")
	if _, err := client.CoreV1().Secrets("a").Update(context.Background(), rotated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := syncPod(t, a, client, podWith("a", "after-rotation", image, "good")); w.Reason != ReasonErrImagePull {
		t.Errorf("a pod whose secret was rotated: %s %s", w.Reason, w.Message)
	}
}

// A failed pull is ErrImagePull, then ImagePullBackOff until the back-off passes; a
// pod that is gone leaves no back-off behind.
func TestFailedPullBacksOffAndIsForgotten(t *testing.T) {
	image := basicRegistry(t, "dev", "right")
	client := fake.NewClientset()
	a, events := agentFor(t, client, Config{})
	pod := podWith("a", "p", image)
	if w := syncPod(t, a, client, pod); w.Reason != ReasonErrImagePull || !strings.Contains(w.Message, "no credential matched") {
		t.Fatalf("first try: %s %s", w.Reason, w.Message)
	}
	w := syncPod(t, a, client, pod)
	if w.Reason != ReasonImagePullBackOff || !strings.Contains(w.Message, "Back-off pulling image") {
		t.Errorf("second try: %s %s", w.Reason, w.Message)
	}
	var reasons []string
	for len(events.Events) > 0 {
		reasons = append(reasons, strings.Fields(<-events.Events)[1])
	}
	if strings.Join(reasons, ",") != "Pulling,Failed,Failed,BackOff" {
		t.Errorf("events %v", reasons)
	}
	if err := a.pods.GetIndexer().Delete(pod); err != nil {
		t.Fatal(err)
	}
	if _, err := a.sync(context.Background(), "a/p"); err != nil {
		t.Fatal(err)
	}
	if len(a.failures) != 0 || len(a.uids) != 0 {
		t.Errorf("a deleted pod left %d failures and %d uids", len(a.failures), len(a.uids))
	}
}

// fakePullAuthz allows what allow says.
type fakePullAuthz struct{ allow map[string]bool }

func (f fakePullAuthz) MayPull(_ context.Context, user rbacauthz.User, repo string) (bool, error) {
	return f.allow[user.Name+" "+repo], nil
}

// An image of the integrated registry on the node is given only while RBAC lets the
// pod's service account (or, for an anonymous pull, anyone) pull it.
func TestIntegratedImagesFollowRBAC(t *testing.T) {
	client := fake.NewClientset()
	authz := fakePullAuthz{allow: map[string]bool{"system:serviceaccount:a:default b/app": true, "system:anonymous pub/app": true}}
	a, _ := agentFor(t, client, Config{RegistryHosts: []string{"registry.local:5000"}, PullAuthorizer: authz})
	pod := podWith("a", "p", "registry.local:5000/b/app:1")
	other := podWith("c", "p", "registry.local:5000/b/app:1")
	withSA := imagepull.PullRecord{Credentials: []string{"serviceaccount:a/default"}}
	anonymous := imagepull.PullRecord{Anonymous: true}
	ctx := context.Background()
	for _, tc := range []struct {
		pod    *corev1.Pod
		image  string
		record imagepull.PullRecord
		want   bool
	}{
		{pod, "registry.local:5000/b/app:1", withSA, true},
		{other, "registry.local:5000/b/app:1", withSA, false},
		{other, "registry.local:5000/pub/app:1", anonymous, true},
		{other, "registry.local:5000/b/app:1", anonymous, false},
		{other, "elsewhere.io/b/app:1", withSA, true},
	} {
		if got := a.mayStillPull(ctx, tc.pod, mustParse(t, tc.image), tc.record); got != tc.want {
			t.Errorf("%s/%s, %s, %+v: %v, want %v", tc.pod.Namespace, tc.pod.Name, tc.image, tc.record, got, tc.want)
		}
	}
}

// fakeStreams holds the tag history of each stream, by namespace/name.
type fakeStreams map[string][]string

func (f fakeStreams) History(_ context.Context, namespace, name string) ([]string, error) {
	return f[namespace+"/"+name], nil
}

// An image of the integrated registry on the node is given only while its stream
// still holds the digest: a namespace made again, or a tag deleted, leaves the cache
// to the registry's own answer.
func TestIntegratedImagesFollowTheirImageStream(t *testing.T) {
	streams := fakeStreams{"b/app": {"sha256:aaa"}, "b/" + imageapi.StreamName("charts/app"): {"sha256:ccc"}}
	a, _ := agentFor(t, fake.NewClientset(), Config{RegistryHosts: []string{"registry.local:5000"}, Streams: streams})
	ctx := context.Background()
	for _, tc := range []struct {
		image, digest string
		want          bool
	}{
		{"registry.local:5000/b/app:1", "sha256:aaa", true},
		{"registry.local:5000/b/app:1", "sha256:bbb", false},
		{"registry.local:5000/b/gone:1", "sha256:aaa", false},
		{"registry.local:5000/b/charts/app:1", "sha256:ccc", true},
		{"elsewhere.io/b/app:1", "sha256:zzz", true},
	} {
		if got := a.stillServed(ctx, mustParse(t, tc.image), tc.digest); got != tc.want {
			t.Errorf("%s@%s: %v, want %v", tc.image, tc.digest, got, tc.want)
		}
	}
}

// The Node authorizer refuses a pod's secret until its graph has caught up with the
// pod's binding: the read is retried, not reported as a missing secret.
func TestSecretReadRetriedWhileTheNodeAuthorizerCatchesUp(t *testing.T) {
	secret := pullSecret(t, "a", "s", "registry.example.com", "u", "p")
	client := fake.NewClientset(secret)
	refusals := 2
	client.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if refusals == 0 {
			return false, nil, nil
		}
		refusals--
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "s", errors.New("no relationship found between node 'n1' and this object"))
	})
	a, events := agentFor(t, client, Config{})
	p := &podCredentials{agent: a, pod: podWith("a", "pod", "registry.example.com/x/app:v1", "s")}
	p.build(context.Background())
	if refusals != 0 || p.keyring.Len() != 1 || len(p.problems) != 0 {
		t.Fatalf("after two refusals: %d credentials, problems %v", p.keyring.Len(), p.problems)
	}
	select {
	case e := <-events.Events:
		t.Errorf("an event was recorded: %s", e)
	default:
	}
}

// fakePlugins answer every image with one credential for the pod's service account.
type fakePlugins struct{}

func (fakePlugins) ForPod(pod *corev1.Pod) credentials.Provider {
	return pluginFor{pod}
}
func (fakePlugins) Forget(types.UID) {}

type pluginFor struct{ pod *corev1.Pod }

func (p pluginFor) Candidates(_ context.Context, image string) (credentials.Candidates, error) {
	// As the kubelet asks its plugins: for the repository, without tag or digest.
	if strings.ContainsAny(image, ":@") {
		return credentials.Candidates{}, fmt.Errorf("plugins asked for %q, not its repository", image)
	}
	return credentials.Candidates{List: []credentials.Candidate{{ID: credentials.ServiceAccountID(p.pod.Namespace, "default", "sa-1"), Description: "plugin"}}}, nil
}
func (pluginFor) ForHost(context.Context, string) credentials.Candidates {
	return credentials.Candidates{}
}

// The node's credential provider plugins come after the pod's secrets, as in the
// kubelet, and a pod holds what they would give it: its service account, by UID.
func TestCredentialProvidersComeAfterThePodsSecrets(t *testing.T) {
	secret := pullSecret(t, "a", "s", "registry.example.com", "u", "p")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "default", UID: "sa-1"}}
	a, _ := agentFor(t, fake.NewClientset(secret, sa), Config{CredentialProviders: fakePlugins{}})
	p := &podCredentials{agent: a, pod: podWith("a", "pod", "registry.example.com/x/app:v1", "s")}
	req := p.request(context.Background(), mustImage(t, "registry.example.com/x/app:v1"))
	if len(req.Credentials) != 2 || req.Credentials[0].Username != "u" || req.Credentials[1].Description != "plugin" {
		t.Fatalf("candidates %+v: want the secret, then the plugin", req.Credentials)
	}
	ids := p.ids(context.Background())
	if !slices.Contains(ids, credentials.ServiceAccountID("a", "default", "sa-1")) || !slices.Contains(ids, credentials.NodeProviderID) {
		t.Errorf("ids %v: want the pod's service account and the node's plugins", ids)
	}
	// The namespace deleted and made again: an account of the same name is another.
	again := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "default", UID: "sa-2"}}
	reused, _ := agentFor(t, fake.NewClientset(secret, again), Config{CredentialProviders: fakePlugins{}})
	if ids := (&podCredentials{agent: reused, pod: p.pod}).ids(context.Background()); slices.Contains(ids, credentials.ServiceAccountID("a", "default", "sa-1")) {
		t.Errorf("a new account of the same name holds the old one's pulls: ids %v", ids)
	}
	without, _ := agentFor(t, fake.NewClientset(secret), Config{})
	if ids := (&podCredentials{agent: without, pod: p.pod}).ids(context.Background()); slices.Contains(ids, credentials.NodeProviderID) {
		t.Errorf("with no plugins, ids %v", ids)
	}
}

// A pod being deleted gracefully is deleted for good at once, as a kubelet does once
// its containers have stopped: this node runs none.
func TestDeletedPodIsConfirmed(t *testing.T) {
	pod := podWith("a", "p", "registry.example.com/x/app:v1")
	now := metav1.Now()
	pod.DeletionTimestamp = &now
	client := fake.NewClientset(pod)
	a, _ := agentFor(t, client, Config{})
	if err := a.confirmDeletion(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	var deleted []k8stesting.DeleteActionImpl
	for _, action := range client.Actions() {
		if d, ok := action.(k8stesting.DeleteActionImpl); ok {
			deleted = append(deleted, d)
		}
	}
	if len(deleted) != 1 || deleted[0].DeleteOptions.GracePeriodSeconds == nil || *deleted[0].DeleteOptions.GracePeriodSeconds != 0 ||
		deleted[0].DeleteOptions.Preconditions == nil || *deleted[0].DeleteOptions.Preconditions.UID != pod.UID {
		t.Fatalf("deletes %+v: want one, grace 0, for the pod's UID", deleted)
	}
	if err := a.confirmDeletion(context.Background(), pod); err != nil {
		t.Errorf("confirming a pod already gone: %v", err)
	}
}

func mustImage(t *testing.T, image string) credentials.Image {
	t.Helper()
	img, err := credentials.ParseImage(image)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustParse(t *testing.T, image string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// The node's status lists an image as soon as a pod has pulled it, not at the next
// status report: a pod that is then refused the image "on this node" (KEP-2535) is
// explained against a node status that has it.
func TestNodeStatusListsAnImageOnceAPodHasPulledIt(t *testing.T) {
	image := basicRegistry(t, "dev", "right")
	host := strings.SplitN(image, "/", 2)[0]
	client := fake.NewClientset(pullSecret(t, "a", "good", host, "dev", "right"), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	a, _ := agentFor(t, client, Config{})
	if w := syncPod(t, a, client, podWith("a", "first", image, "good")); w.Reason != ReasonPullOnly {
		t.Fatalf("first pod: %s %s", w.Reason, w.Message)
	}
	node, err := client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(node.Status.Images) != 1 || !slices.Contains(node.Status.Images[0].Names, image) {
		t.Errorf("the node's status after the pull lists %+v, want %s", node.Status.Images, image)
	}
	patches := 0
	for _, act := range client.Actions() {
		if act.GetVerb() == "patch" && act.GetResource().Resource == "nodes" {
			patches++
		}
	}
	syncPod(t, a, client, podWith("a", "second", image, "good"))
	for _, act := range client.Actions() {
		if act.GetVerb() == "patch" && act.GetResource().Resource == "nodes" {
			patches--
		}
	}
	if patches != 0 {
		t.Errorf("a pod using the image already listed patched the node %d more times", -patches)
	}
}
