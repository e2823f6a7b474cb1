package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/platform/listen"
	"pullgate.dev/pullgate/internal/services"
)

// controllersOptions are the flags of `pullgate controllers`.
type controllersOptions struct {
	*globalOptions
	kube          *genericclioptions.ConfigFlags
	registryHosts []string
	healthListen  string
	pullSecrets   bool
}

func newControllersCommand(g *globalOptions) *cobra.Command {
	o := &controllersOptions{globalOptions: g, kube: genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		Use:   "controllers",
		Short: "Run pullgate's controllers against any cluster: project service accounts, role bindings, registry pull secrets",
		Long: `Run pullgate's controllers against the cluster your kubeconfig points at: every
namespace gets the builder and deployer service accounts and the registry's role
bindings (system:image-pullers, system:image-builders, system:deployers), and every
service account gets one pull secret for the integrated registry, linked on its
imagePullSecrets, holding a bound token that is kept fresh; Deployments,
StatefulSets, DaemonSets and CronJobs with image.openshift.io/triggers roll to
their image stream tags' new images. pullgate up and
pullgate registry serve run them too. Any number of replicas may run: one, elected
on Lease pullgate-system/pullgate-controllers, runs the controllers; another takes
over within 12 s of it dying.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			restConfig, err := o.kube.ToRESTConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			return o.Run(cmd.Context(), restConfig)
		},
	}
	o.kube.AddFlags(cmd.Flags())
	cmd.Flags().StringSliceVar(&o.registryHosts, "registry-host", nil, "host[:port] the integrated registry answers to (repeatable, at least one)")
	cmd.Flags().BoolVar(&o.pullSecrets, "serviceaccount-pull-secrets", true, "give every service account a <sa>-dockercfg pull secret for the integrated registry; false removes those written before (for kubelets that pull with pullgate credential-provider)")
	cmd.Flags().StringVar(&o.healthListen, "health-listen", "", "address to serve /healthz (which replica leads) and /metrics on; empty: none")
	return cmd
}

func (o *controllersOptions) Run(ctx context.Context, restConfig *rest.Config) error {
	if len(o.registryHosts) == 0 {
		return fmt.Errorf("--registry-host: give at least one host[:port] of the integrated registry")
	}
	cfg := services.ControllersConfig{KubeConfig: restConfig, RegistryNames: o.registryHosts, NoPullSecrets: !o.pullSecrets, Log: o.logger()}
	if o.healthListen != "" {
		listener, err := listen.TCP(o.healthListen, "--health-listen")
		if err != nil {
			return err
		}
		defer listener.Close()
		cfg.Health = listener
		fmt.Fprintf(o.out, "controllers health on %s\n", listener.Addr())
	}
	return services.RunControllers(ctx, cfg)
}
