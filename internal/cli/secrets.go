package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/scheme"
)

// NewSecretsCommand is `pullgate secrets link|unlink`, as oc's.
func NewSecretsCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "secrets", Aliases: []string{"secret"}, Short: "Link secrets to service accounts (as oc secrets)"}
	cmd.AddCommand(newLinkCommand(f, streams, true), newLinkCommand(f, streams, false))
	return cmd
}

// LinkOptions is one `secrets link` or `secrets unlink`, with oc's behaviour and
// messages (oc's pkg/cli/secrets is the reference; test/ocdiff holds pullgate to it).
type LinkOptions struct {
	genericiooptions.IOStreams
	// PrintFlags print the service account after an unlink ("serviceaccount/NAME
	// updated", or the object with -o).
	PrintFlags     *genericclioptions.PrintFlags
	Link           bool
	ServiceAccount string
	// Secrets are as given: NAME, secret/NAME or secrets/NAME.
	Secrets   []string
	For       []string
	Namespace string
	Client    kubernetes.Interface
}

// NewLinkChange is one `secrets link SA SECRET --for=pull` (link) or `secrets unlink
// SA SECRET`, as the CLI runs it; its messages go to streams.
func NewLinkChange(client kubernetes.Interface, streams genericiooptions.IOStreams, namespace, sa, secret string, link bool) *LinkOptions {
	o := newLinkOptions(streams, link)
	o.ServiceAccount, o.Secrets, o.For, o.Namespace, o.Client = sa, []string{secret}, []string{"pull"}, namespace, client
	return o
}

func newLinkOptions(streams genericiooptions.IOStreams, link bool) *LinkOptions {
	return &LinkOptions{IOStreams: streams, Link: link, PrintFlags: genericclioptions.NewPrintFlags("updated").WithTypeSetter(scheme.Scheme)}
}

func newLinkCommand(f cmdutil.Factory, streams genericiooptions.IOStreams, link bool) *cobra.Command {
	o := newLinkOptions(streams, link)
	use, short := "link serviceaccounts-name secret-name [another-secret-name]...", "Link secrets to a service account"
	if !link {
		use, short = "unlink serviceaccount-name secret-name [another-secret-name] ...", "Detach secrets from a service account"
	}
	cmd := &cobra.Command{
		Use: use, Short: short,
		Example: `  # Let pods of the default service account pull with a secret
  pullgate secrets link default my-pull-secret --for=pull`,
		Run: func(cmd *cobra.Command, args []string) {
			cmdutil.CheckErr(o.Complete(f, args))
			cmdutil.CheckErr(o.Validate())
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	if link {
		cmd.Flags().StringSliceVar(&o.For, "for", []string{"mount"}, "type of secret to link: mount or pull")
	} else {
		o.PrintFlags.AddFlags(cmd)
	}
	return cmd
}

func (o *LinkOptions) Complete(f cmdutil.Factory, args []string) error {
	if len(args) < 2 {
		return errors.New("must have service account name and at least one secret name")
	}
	o.ServiceAccount, o.Secrets = args[0], args[1:]
	var err error
	if o.Namespace, _, err = f.ToRawKubeConfigLoader().Namespace(); err != nil {
		return err
	}
	o.Client, err = f.KubernetesClientSet()
	return err
}

// Validate checks the names and --for as oc does.
func (o *LinkOptions) Validate() error {
	for _, name := range o.Secrets {
		if kind, _, ok := strings.Cut(name, "/"); ok && kind != "secret" && kind != "secrets" {
			return fmt.Errorf("expected resource of type secret, got %q", name)
		}
	}
	if !o.Link {
		return nil
	}
	if len(o.For) == 0 {
		o.For = []string{"mount"}
	}
	for i, v := range o.For {
		switch strings.ToLower(v) {
		case "pull", "mount":
			o.For[i] = strings.ToLower(v)
		default:
			return fmt.Errorf("unknown for: %v", v)
		}
	}
	return nil
}

// secretName is a secret's name without its secret/ or secrets/ prefix.
func secretName(name string) string {
	if _, n, ok := strings.Cut(name, "/"); ok {
		return n
	}
	return name
}

// secrets reads the named secrets; a missing one is said on stderr and, for an
// unlink, kept by name (a deleted secret can still be unlinked).
func (o *LinkOptions) secrets(ctx context.Context) (names []string, notFound bool, err error) {
	for _, name := range o.Secrets {
		_, err := o.Client.CoreV1().Secrets(o.Namespace).Get(ctx, secretName(name), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			fmt.Fprintf(o.ErrOut, "secret %q not found\n", name)
			notFound = true
			if !o.Link {
				names = append(names, secretName(name))
			}
		case err != nil:
			return nil, false, err
		default:
			names = append(names, secretName(name))
		}
	}
	if len(names) == 0 {
		return nil, false, errors.New("No valid secrets found")
	}
	slices.Sort(names)
	return slices.Compact(names), notFound, nil
}

func (o *LinkOptions) Run(ctx context.Context) error {
	sa, err := o.Client.CoreV1().ServiceAccounts(o.Namespace).Get(ctx, o.ServiceAccount, metav1.GetOptions{})
	if err != nil {
		return err
	}
	names, notFound, err := o.secrets(ctx)
	if err != nil {
		return err
	}
	if o.Link {
		return o.link(ctx, sa, names, notFound)
	}
	return o.unlink(ctx, sa, names, notFound)
}

func (o *LinkOptions) link(ctx context.Context, sa *corev1.ServiceAccount, names []string, notFound bool) error {
	updated := false
	for _, name := range names {
		if slices.Contains(o.For, "mount") && !slices.ContainsFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name }) {
			sa.Secrets = append(sa.Secrets, corev1.ObjectReference{Name: name})
			updated = true
		}
	}
	for _, name := range names {
		if slices.Contains(o.For, "pull") && !slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name }) {
			sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
			updated = true
		}
	}
	if updated {
		_, err := o.Client.CoreV1().ServiceAccounts(o.Namespace).Update(ctx, sa, metav1.UpdateOptions{})
		return err
	}
	if notFound {
		return errors.New("Some secrets could not be linked")
	}
	return nil
}

func (o *LinkOptions) unlink(ctx context.Context, sa *corev1.ServiceAccount, names []string, notFound bool) error {
	before := len(sa.Secrets) + len(sa.ImagePullSecrets)
	sa.Secrets = slices.DeleteFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return slices.Contains(names, r.Name) })
	sa.ImagePullSecrets = slices.DeleteFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return slices.Contains(names, r.Name) })
	if len(sa.Secrets)+len(sa.ImagePullSecrets) == before {
		return errors.New("No valid secrets found or secrets not linked to service account")
	}
	if _, err := o.Client.CoreV1().ServiceAccounts(o.Namespace).Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if notFound {
		return fmt.Errorf("Unlinked deleted secrets from %s/%s service account", o.Namespace, sa.Name)
	}
	p, err := o.PrintFlags.ToPrinter()
	if err != nil {
		return err
	}
	return p.PrintObj(sa, o.Out)
}
