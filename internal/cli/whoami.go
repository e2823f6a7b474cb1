package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// WhoAmIOptions is `pullgate whoami`: the user the API server sees.
type WhoAmIOptions struct {
	genericiooptions.IOStreams
	Client kubernetes.Interface
}

// NewWhoAmICommand is `pullgate whoami`.
func NewWhoAmICommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &WhoAmIOptions{IOStreams: streams}
	return &cobra.Command{
		Use:   "whoami",
		Short: "Print the user the API server authenticates you as",
		Args:  cobra.NoArgs,
		Run:   runWithClient(f, &o.Client, o.Run),
	}
}

func (o *WhoAmIOptions) Run(ctx context.Context) error {
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
