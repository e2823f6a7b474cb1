package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/registry/keys"
)

// RotateKeyOptions is `pullgate adm rotate-registry-key`.
type RotateKeyOptions struct {
	// Propagation is how long the new key only verifies before it signs.
	Propagation time.Duration
	Client      kubernetes.Interface
	genericiooptions.IOStreams
}

func newRotateRegistryKeyCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &RotateKeyOptions{Propagation: keys.Propagation, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "rotate-registry-key",
		Short: "Make a new key for registry tokens; the old one keeps verifying until its tokens have expired",
		Long: fmt.Sprintf(`Add a new signing key to the registry's shared keys (Secret %s/%s). Every
replica verifies tokens signed with it at once and signs with it after
--propagation; the key it replaces verifies for %s more, the longest a token it
signed can live plus margins, then is dropped. Nobody has to log in again.`, keys.Namespace, keys.Name, keys.Overlap),
		Example: `  pullgate adm rotate-registry-key`,
		Args:    cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			cmdutil.CheckErr(o.Complete(f))
			cmdutil.CheckErr(o.Validate())
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().DurationVar(&o.Propagation, "propagation", o.Propagation, "how long the new key only verifies before it signs, for every replica to have seen it")
	return cmd
}

// Complete makes the client.
func (o *RotateKeyOptions) Complete(f cmdutil.Factory) error {
	client, err := f.KubernetesClientSet()
	o.Client = client
	return err
}

// Validate checks the flags.
func (o *RotateKeyOptions) Validate() error {
	if o.Propagation < 0 {
		return fmt.Errorf("--propagation %s: must not be negative", o.Propagation)
	}
	return nil
}

// Run rotates and says what changed.
func (o *RotateKeyOptions) Run(ctx context.Context) error {
	set, err := keys.Rotate(ctx, o.Client, o.Propagation)
	if err != nil {
		return err
	}
	next := set.Keys[len(set.Keys)-1]
	fmt.Fprintf(o.Out, "registry key %s added: it signs from %s; %d older key(s) verify until their tokens have expired\n",
		next.ID, next.SignFrom.Format(time.RFC3339), len(set.Keys)-1)
	return nil
}
