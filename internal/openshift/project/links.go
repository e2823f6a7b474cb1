package project

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// LinkChange is secrets linked to (Link) or unlinked from (Unlink) a service
// account, with oc's behaviour (oc's pkg/cli/secrets is the reference).
type LinkChange struct {
	Namespace      string
	ServiceAccount string
	// Secrets are as given: NAME, secret/NAME or secrets/NAME.
	Secrets []string
	// ForPull links to imagePullSecrets, ForMount to secrets (Link only; Unlink
	// removes from both).
	ForPull, ForMount bool
}

// LinkResult is what a link change did.
type LinkResult struct {
	// ServiceAccount is the account as it is after the change.
	ServiceAccount *corev1.ServiceAccount
	// Changed says the account was updated.
	Changed bool
	// NotFound are the secrets, as given, that do not exist: skipped by Link, and
	// unlinked by name by Unlink (a deleted secret can still be unlinked).
	NotFound []string
}

// Validate checks the names as oc does.
func (c LinkChange) Validate() error {
	for _, name := range c.Secrets {
		if kind, _, ok := strings.Cut(name, "/"); ok && kind != "secret" && kind != "secrets" {
			return fmt.Errorf("expected resource of type secret, got %q", name)
		}
	}
	return nil
}

// Link adds the secrets the account lacks, in the order given. An account changed
// meanwhile (its own pull secret linked by pullgate's controller, in a new
// namespace) is read again and the change made on it.
func Link(ctx context.Context, client kubernetes.Interface, c LinkChange) (LinkResult, error) {
	return onFreshAccount(ctx, client, c, link)
}

func link(ctx context.Context, client kubernetes.Interface, c LinkChange) (LinkResult, error) {
	sa, res, names, err := c.read(ctx, client, false)
	if err != nil {
		return res, err
	}
	for _, name := range names {
		if c.ForMount && !slices.ContainsFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name }) {
			sa.Secrets = append(sa.Secrets, corev1.ObjectReference{Name: name})
			res.Changed = true
		}
	}
	for _, name := range names {
		if c.ForPull && !slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name }) {
			sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
			res.Changed = true
		}
	}
	if !res.Changed {
		if len(res.NotFound) > 0 {
			return res, errors.New("Some secrets could not be linked")
		}
		return res, nil
	}
	res.ServiceAccount, err = client.CoreV1().ServiceAccounts(c.Namespace).Update(ctx, sa, metav1.UpdateOptions{})
	return res, err
}

// Unlink removes the secrets from the account's secrets and imagePullSecrets. When
// some no longer exist it says so with an error after unlinking them (oc's). A
// conflict is retried on the account read again.
func Unlink(ctx context.Context, client kubernetes.Interface, c LinkChange) (LinkResult, error) {
	return onFreshAccount(ctx, client, c, unlink)
}

// onFreshAccount runs change, which reads the account and updates it, again on a
// conflict.
func onFreshAccount(ctx context.Context, client kubernetes.Interface, c LinkChange,
	change func(context.Context, kubernetes.Interface, LinkChange) (LinkResult, error)) (res LinkResult, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		res, err = change(ctx, client, c)
		return err
	})
	return res, err
}

func unlink(ctx context.Context, client kubernetes.Interface, c LinkChange) (LinkResult, error) {
	sa, res, names, err := c.read(ctx, client, true)
	if err != nil {
		return res, err
	}
	before := len(sa.Secrets) + len(sa.ImagePullSecrets)
	sa.Secrets = slices.DeleteFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return slices.Contains(names, r.Name) })
	sa.ImagePullSecrets = slices.DeleteFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return slices.Contains(names, r.Name) })
	if len(sa.Secrets)+len(sa.ImagePullSecrets) == before {
		return res, errors.New("No valid secrets found or secrets not linked to service account")
	}
	if res.ServiceAccount, err = client.CoreV1().ServiceAccounts(c.Namespace).Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
		return res, err
	}
	res.Changed = true
	if len(res.NotFound) > 0 {
		return res, fmt.Errorf("Unlinked deleted secrets from %s/%s service account", c.Namespace, sa.Name)
	}
	return res, nil
}

// read gets the account and the secrets; missing ones are noted and, when
// keepMissing, kept by name.
func (c LinkChange) read(ctx context.Context, client kubernetes.Interface, keepMissing bool) (*corev1.ServiceAccount, LinkResult, []string, error) {
	if err := c.Validate(); err != nil {
		return nil, LinkResult{}, nil, err
	}
	sa, err := client.CoreV1().ServiceAccounts(c.Namespace).Get(ctx, c.ServiceAccount, metav1.GetOptions{})
	if err != nil {
		return nil, LinkResult{}, nil, err
	}
	res := LinkResult{ServiceAccount: sa}
	var names []string
	for _, given := range c.Secrets {
		name := secretName(given)
		_, err := client.CoreV1().Secrets(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			res.NotFound = append(res.NotFound, given)
			if keepMissing {
				names = append(names, name)
			}
		case err != nil:
			return nil, res, nil, err
		default:
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, res, nil, errors.New("No valid secrets found")
	}
	slices.Sort(names)
	sa = sa.DeepCopy()
	return sa, res, slices.Compact(names), nil
}

// secretName is a secret's name without its secret/ or secrets/ prefix.
func secretName(name string) string {
	if _, n, ok := strings.Cut(name, "/"); ok {
		return n
	}
	return name
}
