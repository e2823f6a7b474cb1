package app

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"pullgate.dev/pullgate/internal/credprovider"
)

func newCredentialProviderCommand(g *globalOptions) *cobra.Command {
	var hosts []string
	cmd := &cobra.Command{
		Use:   "credential-provider --registry-host HOST[:PORT]...",
		Short: "A kubelet credential provider plugin: the pod's own service-account token for the integrated registry",
		Long: `A kubelet credential provider plugin (credentialprovider.kubelet.k8s.io/v1, KEP-4412).
The kubelet runs it with a CredentialProviderRequest on stdin holding a token of the
pod's service account for the audience pullgate-registry; for the integrated
registry's hosts it answers on stdout with that token as the password, cached until a
minute before it expires; for any other image, with no credential. A bad request is
one line on stderr and exit 1, with nothing on stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(hosts) == 0 {
				return errors.New("--registry-host: give at least one host[:port] of the integrated registry")
			}
			return credprovider.Plugin{RegistryHosts: hosts}.Run(os.Stdin, g.out)
		},
	}
	cmd.Flags().StringSliceVar(&hosts, "registry-host", nil, "host[:port] of pullgate's integrated registry (repeatable)")
	return cmd
}
