package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"pullgate.dev/pullgate/internal/controlplane"
	"pullgate.dev/pullgate/internal/datadir"
)

// upOptions are the flags of `pullgate up`.
type upOptions struct {
	*globalOptions
	dataDir     string
	apiPort     int
	bindAddress string
	controllers []string
}

func newUpCommand(g *globalOptions) *cobra.Command {
	o := &upOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run etcd, kube-apiserver, kube-controller-manager and pullgate on this machine",
		Long: `Run the whole of pullgate on one machine: an embedded etcd, the real kube-apiserver
and kube-controller-manager, in this process. Data, PKI and kubeconfigs live in
--data-dir and survive restarts. SIGINT or SIGTERM stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.dataDir, "data-dir", datadir.Default(), "directory for etcd data, PKI and kubeconfigs")
	cmd.Flags().IntVar(&o.apiPort, "api-port", 6443, "port of the Kubernetes API server")
	cmd.Flags().StringVar(&o.bindAddress, "bind-address", "127.0.0.1", "address the Kubernetes API server listens on")
	cmd.Flags().StringSliceVar(&o.controllers, "controllers", controlplane.DefaultControllers, "kube-controller-manager controllers to run")
	return cmd
}

func (o *upOptions) Validate() error {
	if o.apiPort < 1 || o.apiPort > 65535 {
		return fmt.Errorf("--api-port %d: must be between 1 and 65535", o.apiPort)
	}
	if o.dataDir == "" {
		return errors.New("--data-dir: must not be empty")
	}
	return nil
}

func (o *upOptions) Run(ctx context.Context) error {
	log := o.logger()
	log.Info("starting pullgate", "data-dir", o.dataDir)
	plane, err := controlplane.Start(ctx, controlplane.Config{
		DataDir:     o.dataDir,
		APIPort:     o.apiPort,
		BindAddress: o.bindAddress,
		Controllers: o.controllers,
		Verbosity:   o.verbosity,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "pullgate is ready: export KUBECONFIG=%s\n", plane.AdminKubeconfig)

	select {
	case <-ctx.Done():
		log.Info("stopping")
		begin := time.Now()
		plane.Stop()
		log.Info("stopped", "took", time.Since(begin).Round(time.Millisecond))
		return nil
	case err := <-plane.Done():
		plane.Stop()
		return err
	}
}
