package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"pullgate.dev/pullgate/internal/node/credprovider"
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
	cmd.AddCommand(newCredentialProviderInstallCommand(g))
	return cmd
}

// installOptions are the flags of `pullgate credential-provider install`.
type installOptions struct {
	*globalOptions
	credprovider.Installation
	interval time.Duration
}

func newCredentialProviderInstallCommand(g *globalOptions) *cobra.Command {
	o := &installOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "install --registry-host HOST[:PORT]... [--bin-dir D] [--config F]",
		Short: "Put the plugin and its kubelet configuration on this node, and keep them there",
		Long: `Copy pullgate-credential-provider into the kubelet's --image-credential-provider-bin-dir
and write its CredentialProviderConfig at --image-credential-provider-config, each in
one step, then check them every --interval and put back what was changed or removed,
until stopped (a DaemonSet's container; --interval 0 installs once and exits). The
kubelet must be started with the two flags; see the README.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringSliceVar(&o.RegistryHosts, "registry-host", nil, "host[:port] of pullgate's integrated registry (repeatable)")
	cmd.Flags().StringVar(&o.Binary, "plugin-binary", "", "the plugin binary to install (default: pullgate-credential-provider beside this binary)")
	cmd.Flags().StringVar(&o.BinDir, "bin-dir", "/usr/local/lib/kubelet-plugins", "the kubelet's --image-credential-provider-bin-dir")
	cmd.Flags().StringVar(&o.ConfigFile, "config", "/etc/kubernetes/credential-providers.yaml", "the kubelet's --image-credential-provider-config")
	cmd.Flags().DurationVar(&o.interval, "interval", time.Minute, "how often to check the installed files; 0: install once and exit")
	return cmd
}

func (o *installOptions) Complete() error {
	if o.Binary != "" {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.Binary = filepath.Join(filepath.Dir(self), credprovider.PluginName)
	return nil
}

func (o *installOptions) Run(ctx context.Context) error {
	for {
		wrote, err := o.Install()
		if err != nil {
			return err
		}
		for _, path := range wrote {
			fmt.Fprintf(o.out, "wrote %s\n", path)
		}
		if o.interval <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
	}
}
