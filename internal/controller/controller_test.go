package controller

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"pullgate.dev/pullgate/internal/controller/reconcile"
	"pullgate.dev/pullgate/pkg/credentials"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is a fake cluster whose informer stores hold what the test puts there: the
// controllers read listers, as upstream controllers' unit tests arrange it.
type world struct {
	client   *fake.Clientset
	factory  informers.SharedInformerFactory
	labelled informers.SharedInformerFactory
	tokens   int // TokenRequests answered
	kid      string
}

func newWorld(t *testing.T, objs ...runtime.Object) *world {
	t.Helper()
	w := &world{client: fake.NewClientset(objs...), kid: "key-1"}
	w.factory = informers.NewSharedInformerFactory(w.client, 0)
	w.labelled = informers.NewSharedInformerFactory(w.client, 0)
	for _, obj := range objs {
		w.store(t, obj)
	}
	// TokenRequest: a JWT whose header names the API server's key.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w.client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: w.kid}}, nil)
		w.tokens++
		tok, _ := jwt.Signed(signer).Claims(jwt.Claims{Subject: "sa", Audience: tr.Spec.Audiences, ID: time.Now().String() + string(rune(w.tokens))}).Serialize()
		tr.Status = authenticationv1.TokenRequestStatus{Token: tok, ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour))}
		return true, tr, nil
	})
	return w
}

// store puts obj in the informer store a controller reads it from.
func (w *world) store(t *testing.T, obj runtime.Object) {
	t.Helper()
	var informer cache.SharedIndexInformer
	switch o := obj.(type) {
	case *corev1.Namespace:
		informer = w.factory.Core().V1().Namespaces().Informer()
	case *corev1.ServiceAccount:
		informer = w.factory.Core().V1().ServiceAccounts().Informer()
	case *rbacv1.RoleBinding:
		informer = w.factory.Rbac().V1().RoleBindings().Informer()
	case *corev1.Secret:
		if o.Labels[LabelPullSecret] != "true" {
			return
		}
		informer = w.labelled.Core().V1().Secrets().Informer()
		// As the informer stores it: through the pull secrets' transform.
		redacted, err := redactTokens(o.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		obj = redacted.(*corev1.Secret)
	default:
		return
	}
	if err := informer.GetIndexer().Update(obj); err != nil {
		t.Fatal(err)
	}
}

// refresh copies the client's current objects into the stores, as the informers would.
func (w *world) refresh(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	sas, _ := w.client.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
	for i := range sas.Items {
		w.store(t, &sas.Items[i])
	}
	secrets, _ := w.client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	for i := range secrets.Items {
		w.store(t, &secrets.Items[i])
	}
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
}

func account(ns, name, uid string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
}

var registryNames = []string{"localhost:5000", "127.0.0.1:5000"}

func newPullSecrets(t *testing.T, w *world) *PullSecrets {
	t.Helper()
	c, err := NewPullSecrets(w.client, w.factory, w.labelled, registryNames, "pullgate-registry", quiet)
	if err != nil {
		t.Fatal(err)
	}
	c.keys.jwks = func(context.Context) ([]byte, error) {
		return []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"key-1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`), nil
	}
	return c
}

// A service account gets one dockercfg secret with a bound token for every registry
// name, linked on imagePullSecrets and secrets; a second sync changes nothing.
func TestPullSecretIsMadeLinkedAndStable(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, namespace("a"), account("a", "default", "uid-1"))
	c := newPullSecrets(t, w)
	if _, err := c.sync(ctx, "a/default"); err != nil {
		t.Fatal(err)
	}
	secret, err := w.client.CoreV1().Secrets("a").Get(ctx, "default-dockercfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if secret.Type != corev1.SecretTypeDockercfg || secret.Labels[LabelPullSecret] != "true" ||
		secret.Annotations[corev1.ServiceAccountUIDKey] != "uid-1" || len(secret.OwnerReferences) != 1 {
		t.Errorf("secret %+v", secret.ObjectMeta)
	}
	cfg, err := credentials.FromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range cfg.Entries {
		keys = append(keys, e.Key)
		if e.Username != "serviceaccount" || e.Password == "" {
			t.Errorf("entry %s: user %q", e.Key, e.Username)
		}
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"127.0.0.1:5000", "localhost:5000"}) {
		t.Errorf("entries %v", keys)
	}
	sa, _ := w.client.CoreV1().ServiceAccounts("a").Get(ctx, "default", metav1.GetOptions{})
	if countRefs(sa, "default-dockercfg") != 2 {
		t.Errorf("account links %v / %v", sa.ImagePullSecrets, sa.Secrets)
	}

	w.refresh(t, "a")
	cached, err := c.secrets.Secrets("a").Get("default-dockercfg")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range cfg.Entries {
		if bytes.Contains(cached.Data[corev1.DockerConfigKey], []byte(e.Password)) || bytes.Contains(cached.Data[corev1.DockerConfigKey], []byte(credentials.EncodeAuth(e.Username, e.Password))) {
			t.Fatalf("the controller's cache holds the token: %s", cached.Data[corev1.DockerConfigKey])
		}
	}
	writes := len(w.client.Actions())
	if _, err := c.sync(ctx, "a/default"); err != nil {
		t.Fatal(err)
	}
	for _, a := range w.client.Actions()[writes:] {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("a second sync wrote: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	if w.tokens != 1 {
		t.Errorf("%d tokens requested, want 1", w.tokens)
	}
}

func countRefs(sa *corev1.ServiceAccount, name string) int {
	n := 0
	for _, r := range sa.ImagePullSecrets {
		if r.Name == name {
			n++
		}
	}
	for _, r := range sa.Secrets {
		if r.Name == name {
			n++
		}
	}
	return n
}

// Each reason to reissue the token is found.
func TestTokenIsReissuedWhenItMustBe(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, namespace("a"), account("a", "default", "uid-1"))
	c := newPullSecrets(t, w)
	if _, err := c.sync(ctx, "a/default"); err != nil {
		t.Fatal(err)
	}
	fresh, _ := w.client.CoreV1().Secrets("a").Get(ctx, "default-dockercfg", metav1.GetOptions{})
	tests := []struct {
		name   string
		edit   func(*corev1.Secret)
		reason string
	}{
		{"fresh", func(*corev1.Secret) {}, ""},
		{"no token", func(s *corev1.Secret) { delete(s.Annotations, AnnotationTokenIssued) }, "no token yet"},
		{"old", func(s *corev1.Secret) {
			s.Annotations[AnnotationTokenIssued] = time.Now().Add(-50 * time.Minute).UTC().Format(time.RFC3339)
			s.Annotations[AnnotationTokenExpires] = time.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339)
		}, "40% of its life left"},
		{"names changed", func(s *corev1.Secret) { s.Annotations[AnnotationRegistryNames] = "elsewhere:5000" }, "registry names changed"},
		{"data edited", func(s *corev1.Secret) { s.Data[corev1.DockerConfigKey] = []byte(`{"localhost:5000":{"auth":"dTpw"}}`) }, "the secret was edited"},
		{"key rotated", func(s *corev1.Secret) { s.Annotations[AnnotationTokenKeyID] = "key-0" }, "the API server's signing key changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fresh.DeepCopy()
			tt.edit(s)
			if _, reason := c.needsToken(ctx, s); reason != tt.reason {
				t.Errorf("reason %q, want %q", reason, tt.reason)
			}
		})
	}
}

// Secrets left by a deleted account go; one of an older account of the same name is
// replaced, never reused.
func TestOrphanedAndStaleSecrets(t *testing.T) {
	ctx := context.Background()
	stale := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "default-dockercfg", UID: "secret-0",
			Labels:      map[string]string{LabelPullSecret: "true"},
			Annotations: map[string]string{corev1.ServiceAccountNameKey: "default", corev1.ServiceAccountUIDKey: "uid-old"}},
		Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: []byte("{}")},
	}
	orphan := stale.DeepCopy()
	orphan.Name, orphan.UID, orphan.Annotations[corev1.ServiceAccountNameKey] = "gone-dockercfg", "secret-1", "gone"
	w := newWorld(t, namespace("a"), account("a", "default", "uid-new"), stale, orphan)
	c := newPullSecrets(t, w)
	if _, err := c.sync(ctx, "a/default"); err != nil {
		t.Fatal(err)
	}
	secret, err := w.client.CoreV1().Secrets("a").Get(ctx, "default-dockercfg", metav1.GetOptions{})
	if err != nil || secret.Annotations[corev1.ServiceAccountUIDKey] != "uid-new" {
		t.Errorf("the older account's secret was not replaced: %v %v", err, secret.Annotations)
	}
	if _, err := c.sync(ctx, "a/gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.client.CoreV1().Secrets("a").Get(ctx, "gone-dockercfg", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the secret of a deleted account is still there: %v", err)
	}
}

// The builder and deployer accounts and the registry bindings are made when missing,
// and an existing one — even edited — is left as it is; a namespace being deleted is
// left alone.
func TestPerNamespaceControllers(t *testing.T) {
	ctx := context.Background()
	edited := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "system:image-pullers"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "only-alice"}}}
	terminating := namespace("going")
	terminating.Status.Phase = corev1.NamespaceTerminating
	w := newWorld(t, namespace("a"), terminating, edited, account("a", "builder", "uid-b"))
	rb, err := NewRoleBindings(w.client, w.factory, quiet)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := NewServiceAccounts(w.client, w.factory, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*reconcile.Loop{rb.Loop, sa.Loop} {
		for _, ns := range []string{"a", "going"} {
			if _, err := c.Reconcile(ctx, ns); err != nil {
				t.Fatalf("%s %s: %v", c.Name, ns, err)
			}
		}
	}
	bindings, _ := w.client.RbacV1().RoleBindings("a").List(ctx, metav1.ListOptions{})
	var names []string
	for _, b := range bindings.Items {
		names = append(names, b.Name)
		if b.Name == "system:image-pullers" && (len(b.Subjects) != 1 || b.Subjects[0].Name != "only-alice") {
			t.Errorf("the edited binding was changed: %v", b.Subjects)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"system:deployers", "system:image-builders", "system:image-pullers"}) {
		t.Errorf("bindings in a: %v", names)
	}
	for _, name := range []string{"builder", "deployer"} {
		if _, err := w.client.CoreV1().ServiceAccounts("a").Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("service account a/%s: %v", name, err)
		}
	}
	for _, a := range w.client.Actions() {
		if a.GetNamespace() == "going" && a.GetVerb() == "create" {
			t.Errorf("created %s in a namespace being deleted", a.GetResource().Resource)
		}
	}
}

// A refusal because the namespace is being deleted is not retried; other errors are.
func TestTerminatingNamespaceIsNotRetried(t *testing.T) {
	terminating := apierrors.NewForbidden(corev1.Resource("secrets"), "x", errors.New("namespace is being terminated"))
	terminating.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}
	if !reconcile.Gone(terminating) {
		t.Error("a NamespaceTerminating refusal is not recognised")
	}
	if reconcile.Gone(apierrors.NewForbidden(corev1.Resource("secrets"), "x", errors.New("RBAC says no"))) {
		t.Error("any Forbidden is taken for a namespace being deleted")
	}
}

func TestPullSecretNameFitsAnyAccount(t *testing.T) {
	long := strings.Repeat("a", 253)
	if n := PullSecretName(long); len(n) > 253 || PullSecretName(long+"b") == n {
		t.Errorf("long names: %q", n)
	}
	if PullSecretName("default") != "default-dockercfg" {
		t.Error(PullSecretName("default"))
	}
}

// With Remove, the controller undoes what it wrote: its secret is unlinked and
// deleted, other links stay, and no token is requested.
func TestRemoveUndoesPullSecrets(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, namespace("a"), account("a", "default", "uid-1"))
	c := newPullSecrets(t, w)
	if _, err := c.sync(ctx, "a/default"); err != nil {
		t.Fatal(err)
	}
	sa, _ := w.client.CoreV1().ServiceAccounts("a").Get(ctx, "default", metav1.GetOptions{})
	sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: "users-own"})
	if _, err := w.client.CoreV1().ServiceAccounts("a").Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.refresh(t, "a")
	tokens := w.tokens
	c.Remove = true
	if _, err := c.sync(ctx, "a/default"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.client.CoreV1().Secrets("a").Get(ctx, "default-dockercfg", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the registry pull secret is still there (%v)", err)
	}
	sa, _ = w.client.CoreV1().ServiceAccounts("a").Get(ctx, "default", metav1.GetOptions{})
	if countRefs(sa, "default-dockercfg") != 0 || countRefs(sa, "users-own") != 1 {
		t.Errorf("links after removal: %v / %v", sa.ImagePullSecrets, sa.Secrets)
	}
	if w.tokens != tokens {
		t.Error("a token was requested while removing")
	}
}
