package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// WhoAmIOptions is `pullgate whoami`: the user the API server sees, or, as oc's
// whoami, the current session's token (-t), context (-c) or server (--show-server).
type WhoAmIOptions struct {
	genericiooptions.IOStreams
	ShowToken, ShowContext, ShowServer bool
	// Token, Context and Server are the session's, from the kubeconfig.
	Token, Context, Server string
	Client                 kubernetes.Interface
}

// NewWhoAmICommand is `pullgate whoami`.
func NewWhoAmICommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &WhoAmIOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Print the user the API server authenticates you as (or the session's token, context or server)",
		Example: `  pullgate whoami
  crane auth login localhost:5000 -u any -p "$(pullgate whoami -t)"`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			cmdutil.CheckErr(o.Complete(f))
			cmdutil.CheckErr(o.Validate())
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().BoolVarP(&o.ShowToken, "show-token", "t", false, "Print the token the current session is using. This will return an error if you are using a different form of authentication.")
	cmd.Flags().BoolVarP(&o.ShowContext, "show-context", "c", false, "Print the current user context name")
	cmd.Flags().BoolVar(&o.ShowServer, "show-server", false, "If true, print the current server's REST API URL")
	return cmd
}

// Complete reads the session from the kubeconfig.
func (o *WhoAmIOptions) Complete(f cmdutil.Factory) error {
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	o.Token, o.Server = cfg.BearerToken, cfg.Host
	raw, err := f.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return err
	}
	o.Context = raw.CurrentContext
	o.Client, err = f.KubernetesClientSet()
	return err
}

// Validate refuses to show what the session does not have, in oc's words.
func (o *WhoAmIOptions) Validate() error {
	if o.ShowToken && o.Token == "" {
		return errors.New("no token is currently in use for this session")
	}
	if o.ShowContext && o.Context == "" {
		return errors.New("no context has been set")
	}
	return nil
}

func (o *WhoAmIOptions) Run(ctx context.Context) error {
	switch {
	case o.ShowToken:
		fmt.Fprintln(o.Out, o.Token)
		return nil
	case o.ShowContext:
		fmt.Fprintln(o.Out, o.Context)
		return nil
	case o.ShowServer:
		fmt.Fprintln(o.Out, o.Server)
		return nil
	}
	user, err := whoAmI(ctx, o.Client)
	if err != nil {
		return err
	}
	fmt.Fprintln(o.Out, user.Username)
	return nil
}

func whoAmI(ctx context.Context, client kubernetes.Interface) (authenticationv1.UserInfo, error) {
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, fmt.Errorf("asking the API server who you are: %w", err)
	}
	return review.Status.UserInfo, nil
}
