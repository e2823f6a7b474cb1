package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// NewSecretsCommand is `pullgate secrets link|unlink`, as oc's.
func NewSecretsCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "secrets", Short: "Link secrets to service accounts (as oc secrets)"}
	cmd.AddCommand(newLinkCommand(f, streams, true), newLinkCommand(f, streams, false))
	return cmd
}

// LinkOptions is one `secrets link` or `secrets unlink`.
type LinkOptions struct {
	genericiooptions.IOStreams
	Link           bool
	ServiceAccount string
	Secrets        []string
	For            []string
	Namespace      string
	Client         kubernetes.Interface
}

func newLinkCommand(f cmdutil.Factory, streams genericiooptions.IOStreams, link bool) *cobra.Command {
	o := &LinkOptions{IOStreams: streams, Link: link}
	use, short := "link SERVICEACCOUNT SECRET [SECRET ...] [--for=pull|mount]", "Link secrets to a service account"
	if !link {
		use, short = "unlink SERVICEACCOUNT SECRET [SECRET ...]", "Detach secrets from a service account"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, DisableFlagsInUseLine: true,
		Example: `  # Let pods of the default service account pull with a secret
  pullgate secrets link default my-pull-secret --for=pull`,
		Run: func(cmd *cobra.Command, args []string) {
			cmdutil.CheckErr(o.Complete(f, cmd, args))
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	if link {
		cmd.Flags().StringSliceVar(&o.For, "for", []string{"mount"}, "what the secret is for: pull, mount, or pull,mount")
	}
	return cmd
}

func (o *LinkOptions) Complete(f cmdutil.Factory, cmd *cobra.Command, args []string) error {
	if len(args) < 2 {
		return cmdutil.UsageErrorf(cmd, "service account name and at least one secret name must be present")
	}
	o.ServiceAccount, o.Secrets = args[0], args[1:]
	for _, v := range o.For {
		if v != "pull" && v != "mount" {
			return cmdutil.UsageErrorf(cmd, "invalid --for value %q: want pull, mount or pull,mount", v)
		}
	}
	var err error
	if o.Namespace, _, err = f.ToRawKubeConfigLoader().Namespace(); err != nil {
		return err
	}
	o.Client, err = f.KubernetesClientSet()
	return err
}

func (o *LinkOptions) Run(ctx context.Context) error {
	if _, err := o.Client.CoreV1().ServiceAccounts(o.Namespace).Get(ctx, o.ServiceAccount, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return fmt.Errorf("serviceaccount %q not found in namespace %q", o.ServiceAccount, o.Namespace)
	} else if err != nil {
		return err
	}
	var present, missing []string
	for _, name := range o.Secrets {
		_, err := o.Client.CoreV1().Secrets(o.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, name)
		case err != nil:
			return err
		default:
			present = append(present, name)
		}
	}
	if o.Link {
		// oc links the secrets that exist, says which do not, and fails only when none do.
		for _, name := range missing {
			fmt.Fprintf(o.ErrOut, "secret %q not found\n", name)
		}
		if len(present) == 0 {
			return fmt.Errorf("no secret linked to serviceaccount %q: %s not found in namespace %q", o.ServiceAccount, quoteAll(missing), o.Namespace)
		}
	} else {
		// A secret that is gone can still be unlinked.
		present = o.Secrets
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sa, err := o.Client.CoreV1().ServiceAccounts(o.Namespace).Get(ctx, o.ServiceAccount, metav1.GetOptions{})
		if err != nil {
			return err
		}
		before := sa.DeepCopy()
		for _, name := range present {
			if o.Link {
				o.link(sa, name)
			} else {
				unlink(sa, name)
			}
		}
		if !o.Link && len(before.ImagePullSecrets) == len(sa.ImagePullSecrets) && len(before.Secrets) == len(sa.Secrets) {
			return fmt.Errorf("no secret %s is linked to serviceaccount %q", quoteAll(o.Secrets), o.ServiceAccount)
		}
		if len(before.ImagePullSecrets) == len(sa.ImagePullSecrets) && len(before.Secrets) == len(sa.Secrets) {
			return nil // already linked: nothing to write
		}
		_, err = o.Client.CoreV1().ServiceAccounts(o.Namespace).Update(ctx, sa, metav1.UpdateOptions{})
		return err
	})
}

func (o *LinkOptions) link(sa *corev1.ServiceAccount, name string) {
	if slices.Contains(o.For, "pull") && !slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name }) {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
	}
	if slices.Contains(o.For, "mount") && !slices.ContainsFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name }) {
		sa.Secrets = append(sa.Secrets, corev1.ObjectReference{Name: name})
	}
}

func unlink(sa *corev1.ServiceAccount, name string) {
	sa.ImagePullSecrets = slices.DeleteFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name })
	sa.Secrets = slices.DeleteFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name })
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
