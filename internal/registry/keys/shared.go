package keys

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// Ensure reads the shared keys, creating them if no replica has yet. Of replicas
// racing to create them, one wins and the others read what it made.
func Ensure(ctx context.Context, client kubernetes.Interface) (*Set, error) {
	secrets := client.CoreV1().Secrets(Namespace)
	for {
		existing, err := secrets.Get(ctx, Name, metav1.GetOptions{})
		if err == nil {
			return decodeSecret(existing)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("registry keys: secret %s/%s: %w", Namespace, Name, err)
		}
		set, err := New(time.Now())
		if err != nil {
			return nil, err
		}
		created, err := create(ctx, client, set)
		if apierrors.IsAlreadyExists(err) {
			continue // another replica was first: use its keys
		}
		if err != nil {
			return nil, err
		}
		return decodeSecret(created)
	}
}

func create(ctx context.Context, client kubernetes.Interface, set *Set) (*corev1.Secret, error) {
	data, err := set.Encode()
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "pullgate"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	created, err := client.CoreV1().Secrets(Namespace).Create(ctx, secret, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("registry keys: namespace %s does not exist (create it: kubectl create namespace %s)", Namespace, Namespace)
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("registry keys: creating secret %s/%s: %w", Namespace, Name, err)
	}
	return created, err
}

func decodeSecret(secret *corev1.Secret) (*Set, error) {
	set, err := Decode(secret.Data)
	if err != nil {
		return nil, fmt.Errorf("registry keys: secret %s/%s: %w (delete it to make new keys; tokens already issued are then refused)", Namespace, Name, err)
	}
	return set, nil
}

// Rotate adds a new signing key to the shared keys (optimistic concurrency: a
// concurrent change is read again and the rotation redone), which signs after
// propagation. It returns the new set.
func Rotate(ctx context.Context, client kubernetes.Interface, propagation time.Duration) (*Set, error) {
	var rotated *Set
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		secret, err := client.CoreV1().Secrets(Namespace).Get(ctx, Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("registry keys: secret %s/%s does not exist: no registry has run yet, so there is nothing to rotate", Namespace, Name)
		}
		if err != nil {
			return fmt.Errorf("registry keys: secret %s/%s: %w", Namespace, Name, err)
		}
		set, err := decodeSecret(secret)
		if err != nil {
			return err
		}
		if rotated, err = set.Rotate(time.Now(), propagation); err != nil {
			return err
		}
		if secret.Data, err = rotated.Encode(); err != nil {
			return err
		}
		_, err = client.CoreV1().Secrets(Namespace).Update(ctx, secret, metav1.UpdateOptions{})
		return err
	})
	return rotated, err
}

// Shared is one replica's view of the shared keys: it signs registry tokens with the
// current signing key and tells the registry which keys verify, following the Secret.
type Shared struct {
	client  kubernetes.Interface
	current atomic.Pointer[Set]
	signers sync.Map // key ID → *tokenauth.Signer
	changed chan struct{}
	log     *slog.Logger
}

// Load reads (or creates) the shared keys.
func Load(ctx context.Context, client kubernetes.Interface, log *slog.Logger) (*Shared, error) {
	set, err := Ensure(ctx, client)
	if err != nil {
		return nil, err
	}
	s := &Shared{client: client, changed: make(chan struct{}, 1), log: log}
	s.current.Store(set)
	return s, nil
}

// Current is the keys as last read.
func (s *Shared) Current() *Set { return s.current.Load() }

// Sign signs a registry token with the key that signs when it is issued
// (tokenserver.TokenSigner).
func (s *Shared) Sign(t tokenauth.Token) (string, error) {
	key := s.current.Load().Signing(t.IssuedAt)
	signer, ok := s.signers.Load(key.ID)
	if !ok {
		made, err := tokenauth.NewSigner(key.Private)
		if err != nil {
			return "", err
		}
		signer, _ = s.signers.LoadOrStore(key.ID, made)
	}
	return signer.(*tokenauth.Signer).Sign(t)
}

// Run follows the Secret until ctx ends, calling verify with the keys whenever the
// keys that verify change: when the Secret changes, and when a replaced key's overlap
// ends. A deleted Secret is written back with the keys this replica holds.
func (s *Shared) Run(ctx context.Context, verify func(*Set)) {
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithNamespace(Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", Name).String()
		}))
	informer := factory.Core().V1().Secrets().Informer()
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.observe(obj) },
		UpdateFunc: func(_, obj any) { s.observe(obj) },
		DeleteFunc: func(any) {
			if _, err := create(ctx, s.client, s.current.Load()); err != nil && !apierrors.IsAlreadyExists(err) {
				s.log.Error("registry keys were deleted and could not be written back", "secret", Namespace+"/"+Name, "err", err)
				return
			}
			s.log.Warn("registry keys were deleted; wrote back the keys this replica holds", "secret", Namespace+"/"+Name)
		},
	})
	factory.Start(ctx.Done())
	defer factory.Shutdown()

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.changed:
		case <-timer.C:
		}
		set := s.current.Load()
		verify(set)
		timer.Stop()
		if next := set.NextChange(time.Now()); !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

func (s *Shared) observe(obj any) {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	set, err := decodeSecret(secret)
	if err != nil {
		s.log.Error("registry keys changed to something unusable; keeping the keys this replica holds", "err", err)
		return
	}
	if set.Equal(s.current.Load()) {
		return
	}
	s.current.Store(set)
	s.log.Info("registry keys changed", "keys", len(set.Keys), "signing", set.Keys[len(set.Keys)-1].ID)
	select {
	case s.changed <- struct{}{}:
	default:
	}
}
