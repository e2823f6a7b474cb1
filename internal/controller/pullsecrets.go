package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"pullgate.dev/pullgate/internal/controller/reconcile"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Labels and annotations of the registry pull secrets.
const (
	LabelPullSecret          = "pullgate.dev/registry-pull-secret"
	AnnotationTokenSHA256    = "pullgate.dev/token-sha256"
	AnnotationTokenIssued    = "pullgate.dev/token-issued"
	AnnotationTokenExpires   = "pullgate.dev/token-expires"
	AnnotationTokenKeyID     = "pullgate.dev/token-key-id"
	AnnotationRegistryNames  = "pullgate.dev/registry-names"
	registryUsername         = "serviceaccount"
	registryEmail            = "serviceaccount@example.org"
	defaultPullTokenLifetime = time.Hour
)

// PullSecrets gives every service account one pull secret for the integrated registry
// (type kubernetes.io/dockercfg, an entry per registry name) holding a token of that
// service account bound to the secret, for the registry's audience; it puts the
// secret on the account's imagePullSecrets and secrets, keeps the token fresh
// (reissued when 40% of its life is left, or when the API server's signing key no
// longer has it), repairs an edited or deleted secret, and deletes secrets left by
// deleted accounts. The secret's name is derived from the account's, so restarts and
// concurrent runs converge on one secret per account.
type PullSecrets struct {
	*reconcile.Loop
	client   kubernetes.Interface
	accounts corelisters.ServiceAccountLister
	secrets  corelisters.SecretLister // only LabelPullSecret secrets
	log      *slog.Logger
	// RegistryNames are every host[:port] the registry answers to.
	registryNames []string
	audience      string
	lifetime      time.Duration
	keys          *signingKeys
	// Remove makes the controller undo its work instead: every registry pull secret it
	// wrote is unlinked from its account and deleted, for clusters whose kubelets pull
	// with the pod's own token (the credential provider), where no long-lived registry
	// credential should exist.
	Remove bool
}

// NewPullSecrets wires the controller to the SA informer of factory and to secrets,
// which it watches through labelled, its own factory.
func NewPullSecrets(client kubernetes.Interface, factory, labelled informers.SharedInformerFactory, registryNames []string, audience string, log *slog.Logger) (*PullSecrets, error) {
	sa := factory.Core().V1().ServiceAccounts()
	sec := labelled.Core().V1().Secrets()
	names := slices.Clone(registryNames)
	slices.Sort(names)
	log = log.With("controller", "pullsecrets")
	c := &PullSecrets{
		client: client, accounts: sa.Lister(), secrets: sec.Lister(),
		log:           log,
		registryNames: slices.Compact(names),
		audience:      audience,
		lifetime:      defaultPullTokenLifetime,
		keys:          &signingKeys{jwks: apiServerKeys(client)},
	}
	// The cache keeps each token's digest, not the token (see redactTokens).
	if err := sec.Informer().SetTransform(redactTokens); err != nil {
		return nil, err
	}
	c.Loop = reconcile.New("pullsecrets", c.sync, log)
	c.Synced = []cache.InformerSynced{sa.Informer().HasSynced, sec.Informer().HasSynced}
	if _, err := sa.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.EnqueueKey, UpdateFunc: func(_, obj any) { c.EnqueueKey(obj) }, DeleteFunc: c.EnqueueKey,
	}); err != nil {
		return nil, err
	}
	enqueueOwner := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if s, ok := obj.(*corev1.Secret); ok && s.Annotations[corev1.ServiceAccountNameKey] != "" {
			c.Add(s.Namespace + "/" + s.Annotations[corev1.ServiceAccountNameKey])
		}
	}
	if _, err := sec.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueOwner, UpdateFunc: func(_, obj any) { enqueueOwner(obj) }, DeleteFunc: enqueueOwner,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// PullSecretSelector selects the secrets this controller writes.
func PullSecretSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelPullSecret: "true"})
}

// PullSecretName is the name of the registry pull secret of service account sa.
func PullSecretName(sa string) string {
	name := sa + "-dockercfg"
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(sa))
	return sa[:253-len("-dockercfg-")-10] + "-dockercfg-" + hex.EncodeToString(sum[:5])
}

func (c *PullSecrets) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	sa, err := c.accounts.ServiceAccounts(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, c.deleteSecrets(ctx, ns, name, "")
	}
	if err != nil {
		return 0, err
	}
	if sa.DeletionTimestamp != nil {
		return 0, nil
	}
	secretName := PullSecretName(sa.Name)
	if c.Remove {
		if err := c.unlink(ctx, sa, secretName); err != nil {
			return 0, err
		}
		return 0, c.deleteSecrets(ctx, ns, name, "")
	}
	// Secrets of this account under another name, or of an older account of the
	// same name, go: one secret per account.
	if err := c.deleteSecrets(ctx, ns, name, secretName); err != nil {
		return 0, err
	}
	secret, err := c.secrets.Secrets(ns).Get(secretName)
	if apierrors.IsNotFound(err) || (err == nil && secret.Annotations[corev1.ServiceAccountUIDKey] != string(sa.UID)) {
		if secret, err = c.createSecret(ctx, sa, secretName, secret); err != nil {
			return 0, err
		}
	} else if err != nil {
		return 0, err
	}
	refresh, reason := c.needsToken(ctx, secret)
	if reason != "" {
		if secret, err = c.issueToken(ctx, sa, secret); err != nil {
			return 0, err
		}
		refresh, _ = c.needsToken(ctx, secret)
		c.log.Debug("pull secret token issued", "serviceaccount", key, "secret", secretName, "why", reason)
	}
	if err := c.link(ctx, sa, secretName); err != nil {
		return 0, err
	}
	return time.Until(refresh), nil
}

// createSecret writes the secret without a token (an empty .dockercfg) so that the
// token can be bound to its UID; replaced, when it belonged to an older account.
func (c *PullSecrets) createSecret(ctx context.Context, sa *corev1.ServiceAccount, name string, stale *corev1.Secret) (*corev1.Secret, error) {
	secrets := c.client.CoreV1().Secrets(sa.Namespace)
	if stale != nil {
		if err := secrets.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &stale.UID}}); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: sa.Namespace,
			Labels: map[string]string{LabelPullSecret: "true"},
			Annotations: map[string]string{
				corev1.ServiceAccountNameKey: sa.Name,
				corev1.ServiceAccountUIDKey:  string(sa.UID),
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ServiceAccount", Name: sa.Name, UID: sa.UID}},
		},
		Type: corev1.SecretTypeDockercfg,
		Data: map[string][]byte{corev1.DockerConfigKey: []byte("{}")},
	}
	created, err := secrets.Create(ctx, secret, metav1.CreateOptions{FieldManager: fieldManager})
	if apierrors.IsAlreadyExists(err) {
		return secrets.Get(ctx, name, metav1.GetOptions{})
	}
	return created, err
}

// needsToken says when the secret's token must be reissued, or why it must be now.
func (c *PullSecrets) needsToken(ctx context.Context, secret *corev1.Secret) (time.Time, string) {
	issued, err1 := time.Parse(time.RFC3339, secret.Annotations[AnnotationTokenIssued])
	expires, err2 := time.Parse(time.RFC3339, secret.Annotations[AnnotationTokenExpires])
	if err1 != nil || err2 != nil {
		return time.Time{}, "no token yet"
	}
	refresh := issued.Add(expires.Sub(issued) * 6 / 10) // 40% of its life left
	if time.Now().After(refresh) {
		return refresh, "40% of its life left"
	}
	if secret.Annotations[AnnotationRegistryNames] != strings.Join(c.registryNames, ",") {
		return refresh, "registry names changed"
	}
	password, ok := c.validData(secret)
	if !ok {
		return refresh, "the secret was edited"
	}
	if secret.Annotations[AnnotationTokenSHA256] != tokenDigest(password) {
		return refresh, "the token was edited"
	}
	if !c.keys.has(ctx, secret.Annotations[AnnotationTokenKeyID]) {
		return refresh, "the API server's signing key changed"
	}
	return refresh, ""
}

// redactedPrefix marks a password the informer's cache replaced by its digest.
const redactedPrefix = "sha256:"

// redactTokens is the transform of the pull secrets' informer: in the cache, each
// entry's password (the token) becomes its SHA-256 and its auth (the same token,
// encoded) goes. The controller only needs to know whether a token changed, a
// token is most of a pull secret's size, and a controller's memory then holds no
// credential of any account. An entry that is not JSON is left for validData to
// call edited.
func redactTokens(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok || s.Type != corev1.SecretTypeDockercfg {
		return obj, nil
	}
	var entries map[string]map[string]any
	if json.Unmarshal(s.Data[corev1.DockerConfigKey], &entries) != nil {
		return obj, nil
	}
	for _, e := range entries {
		if p, ok := e["password"].(string); ok {
			e["password"] = redactedPrefix + tokenDigest(p)
		}
		delete(e, "auth")
	}
	data, err := json.Marshal(entries)
	if err != nil {
		return obj, nil
	}
	s.Data = map[string][]byte{corev1.DockerConfigKey: data}
	return s, nil
}

// tokenDigest is the hex SHA-256 of a token, from the token or from the digest the
// cache keeps instead.
func tokenDigest(password string) string {
	if d, ok := strings.CutPrefix(password, redactedPrefix); ok {
		return d
	}
	sum := sha256.Sum256([]byte(password))
	return hex.EncodeToString(sum[:])
}

// validData returns the token if the secret holds exactly the entries it should.
func (c *PullSecrets) validData(secret *corev1.Secret) (string, bool) {
	if secret.Type != corev1.SecretTypeDockercfg {
		return "", false
	}
	cfg, err := credentials.FromSecret(secret)
	if err != nil || len(cfg.Entries) != len(c.registryNames) {
		return "", false
	}
	password := ""
	for _, e := range cfg.Entries {
		if !slices.Contains(c.registryNames, e.Key) || e.Username != registryUsername || e.Password == "" || (password != "" && e.Password != password) {
			return "", false
		}
		password = e.Password
	}
	return password, true
}

// issueToken requests a token bound to the secret and writes it in.
func (c *PullSecrets) issueToken(ctx context.Context, sa *corev1.ServiceAccount, secret *corev1.Secret) (*corev1.Secret, error) {
	tr, err := c.client.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{c.audience},
			ExpirationSeconds: ptr.To(int64(c.lifetime.Seconds())),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Secret", Name: secret.Name, UID: secret.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for service account %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	entries := map[string]map[string]string{}
	auth := credentials.EncodeAuth(registryUsername, tr.Status.Token)
	for _, host := range c.registryNames {
		entries[host] = map[string]string{"username": registryUsername, "password": tr.Status.Token, "email": registryEmail, "auth": auth}
	}
	data, err := json.Marshal(entries)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(tr.Status.Token))
	updated := secret.DeepCopy()
	updated.Type = corev1.SecretTypeDockercfg
	updated.Data = map[string][]byte{corev1.DockerConfigKey: data}
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	updated.Annotations[AnnotationTokenSHA256] = hex.EncodeToString(sum[:])
	updated.Annotations[AnnotationTokenIssued] = time.Now().UTC().Format(time.RFC3339)
	updated.Annotations[AnnotationTokenExpires] = tr.Status.ExpirationTimestamp.UTC().Format(time.RFC3339)
	updated.Annotations[AnnotationTokenKeyID] = keyID(tr.Status.Token)
	updated.Annotations[AnnotationRegistryNames] = strings.Join(c.registryNames, ",")
	return c.client.CoreV1().Secrets(sa.Namespace).Update(ctx, updated, metav1.UpdateOptions{FieldManager: fieldManager})
}

// link puts the secret on the account's imagePullSecrets and secrets, keeping every
// other entry and never adding one twice.
func (c *PullSecrets) link(ctx context.Context, sa *corev1.ServiceAccount, name string) error {
	linked := func(sa *corev1.ServiceAccount) bool {
		return slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name }) &&
			slices.ContainsFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name })
	}
	if linked(sa) {
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := c.client.CoreV1().ServiceAccounts(sa.Namespace).Get(ctx, sa.Name, metav1.GetOptions{})
		if err != nil || current.UID != sa.UID || linked(current) {
			return client404(err)
		}
		current = current.DeepCopy()
		if !slices.ContainsFunc(current.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name }) {
			current.ImagePullSecrets = append(current.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
		}
		if !slices.ContainsFunc(current.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name }) {
			current.Secrets = append(current.Secrets, corev1.ObjectReference{Name: name})
		}
		_, err = c.client.CoreV1().ServiceAccounts(sa.Namespace).Update(ctx, current, metav1.UpdateOptions{FieldManager: fieldManager})
		return err
	})
}

// unlink takes the secret off the account's imagePullSecrets and secrets, keeping
// every other entry.
func (c *PullSecrets) unlink(ctx context.Context, sa *corev1.ServiceAccount, name string) error {
	linked := func(sa *corev1.ServiceAccount) bool {
		return slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name }) ||
			slices.ContainsFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name })
	}
	if !linked(sa) {
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := c.client.CoreV1().ServiceAccounts(sa.Namespace).Get(ctx, sa.Name, metav1.GetOptions{})
		if err != nil || current.UID != sa.UID || !linked(current) {
			return client404(err)
		}
		current = current.DeepCopy()
		current.ImagePullSecrets = slices.DeleteFunc(current.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name })
		current.Secrets = slices.DeleteFunc(current.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name })
		_, err = c.client.CoreV1().ServiceAccounts(sa.Namespace).Update(ctx, current, metav1.UpdateOptions{FieldManager: fieldManager})
		return err
	})
}

func client404(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// deleteSecrets deletes this controller's secrets for account name in ns, except keep
// (which createSecret replaces if it belonged to an older account of that name).
func (c *PullSecrets) deleteSecrets(ctx context.Context, ns, name, keep string) error {
	secrets, err := c.secrets.Secrets(ns).List(PullSecretSelector())
	if err != nil {
		return err
	}
	for _, s := range secrets {
		if s.Annotations[corev1.ServiceAccountNameKey] != name {
			continue
		}
		if s.Name == keep {
			continue
		}
		err := c.client.CoreV1().Secrets(ns).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting orphaned pull secret %s/%s: %w", ns, s.Name, err)
		}
	}
	return nil
}
