package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/scheme"

	"pullgate.dev/pullgate/internal/openshift/project"
)

// NewSecretsCommand is `pullgate secrets link|unlink`, as oc's.
func NewSecretsCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "secrets", Aliases: []string{"secret"}, Short: "Link secrets to service accounts (as oc secrets)", Run: cmdutil.DefaultSubCommandRun(streams.ErrOut)}
	cmd.AddCommand(newLinkCommand(f, streams, true), newLinkCommand(f, streams, false))
	return cmd
}

// LinkOptions is one `secrets link` or `secrets unlink`: project.Link or
// project.Unlink, printed with oc's messages (oc's pkg/cli/secrets is the reference;
// test/ocdiff holds pullgate to it).
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
	if err := o.change().Validate(); err != nil {
		return err
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

func (o *LinkOptions) change() project.LinkChange {
	return project.LinkChange{Namespace: o.Namespace, ServiceAccount: o.ServiceAccount, Secrets: o.Secrets,
		ForPull: slices.Contains(o.For, "pull"), ForMount: slices.Contains(o.For, "mount")}
}

func (o *LinkOptions) Run(ctx context.Context) error {
	if o.Link {
		res, err := project.Link(ctx, o.Client, o.change())
		o.notFound(res)
		return err
	}
	res, err := project.Unlink(ctx, o.Client, o.change())
	o.notFound(res)
	if err != nil {
		return err
	}
	p, err := o.PrintFlags.ToPrinter()
	if err != nil {
		return err
	}
	return p.PrintObj(res.ServiceAccount, o.Out)
}

func (o *LinkOptions) notFound(res project.LinkResult) {
	for _, name := range res.NotFound {
		fmt.Fprintf(o.ErrOut, "secret %q not found\n", name)
	}
}
