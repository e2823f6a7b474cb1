package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"pullgate.dev/pullgate/internal/openshift/console"
	"pullgate.dev/pullgate/internal/platform/datadir"
)

// consoleOptions are the flags of `pullgate console`.
type consoleOptions struct {
	*globalOptions
	kube    *genericclioptions.ConfigFlags
	listen  string
	url     bool
	dataDir string
}

func newConsoleCommand(g *globalOptions) *cobra.Command {
	o := &consoleOptions{globalOptions: g, kube: genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		Use:   "console [--listen 127.0.0.1:PORT] | console --url",
		Short: "Serve the web console on this machine, acting as you (your kubeconfig's user)",
		Long: `Serve pullgate's web console on loopback: projects, image streams, who can pull
what and why, pods' pull state with the explain pull diagnosis, service accounts' pull
secrets, and the seed's actions. Every read and write is done with your kubeconfig's
credentials, so it shows and does only what your RBAC allows. Open the printed URL: its
one-time token logs this browser in; nobody else on the machine, and no other site,
can drive it.

With --url, serve nothing: print a fresh login link for the console pullgate up
runs (its first link was used — by another browser, or by curl). Opening the new
link ends the session the old one opened.`,
		Example: `  # A console of your own, as your kubeconfig's user
  pullgate console
  # A new login link for pullgate up's console
  pullgate console --url`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.Run(cmd.Context()) },
	}
	o.kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:0", "loopback address to serve on (port 0: any free port)")
	cmd.Flags().BoolVar(&o.url, "url", false, "print a fresh login link for pullgate up's console instead of serving one")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", datadir.Default(), "with --url: pullgate up's data directory")
	return cmd
}

func (o *consoleOptions) Run(ctx context.Context) error {
	if o.url {
		url, err := console.RequestLoginURL(ctx, console.LinkSocket(o.dataDir))
		if err != nil {
			return err
		}
		fmt.Fprintln(o.out, url)
		return nil
	}
	cfg, err := o.kube.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	_, url, err := console.Start(ctx, cfg, o.listen, o.logger())
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "console: %s\n", url)
	<-ctx.Done()
	return nil
}
