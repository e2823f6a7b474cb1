package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
	"pullgate.dev/pullgate/internal/platform/datadir"
	"pullgate.dev/pullgate/internal/platform/listen"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/internal/registry/tokenserver"
	"pullgate.dev/pullgate/internal/services"
)

// tokenServerOptions are the flags of `pullgate token-server`.
type tokenServerOptions struct {
	*globalOptions
	listen, dataDir, htpasswd, service, issuer string
	tlsCert, tlsKey                            string
	grants                                     []string
}

func newTokenServerCommand(g *globalOptions) *cobra.Command {
	o := &tokenServerOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "token-server",
		Short: "A standalone token server (Docker token-auth spec) for a registry that delegates authentication",
		Long: `Serve /token for a standalone registry on another host (pullgate registry serve
--standalone --token-realm …): users from an htpasswd file, each allowed what the
--grant flags give them. Its signing key lives in --data-dir; its public keys are
written to --data-dir/jwks.json for the registry's --token-jwks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.Run(cmd.Context()) },
	}
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:5001", "address to serve /token on")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", filepath.Join(datadir.Default(), "token-server"), "directory for the signing key and jwks.json")
	cmd.Flags().StringVar(&o.htpasswd, "htpasswd", "", "htpasswd file of the users (bcrypt)")
	cmd.Flags().StringArrayVar(&o.grants, "grant", nil, "USER=REPOSITORY-GLOB:ACTIONS, e.g. alice=team/*:pull (repeatable; USER * is anyone who signs in)")
	cmd.Flags().StringVar(&o.service, "service", "registry", "service name the tokens are issued for")
	cmd.Flags().StringVar(&o.issuer, "issuer", "pullgate-token-server", "issuer the tokens name")
	cmd.Flags().StringVar(&o.tlsCert, "tls-cert-file", "", "serve HTTPS with this certificate (clients refuse an http realm for an https registry)")
	cmd.Flags().StringVar(&o.tlsKey, "tls-key-file", "", "key of --tls-cert-file")
	return cmd
}

func (o *tokenServerOptions) Run(ctx context.Context) error {
	if o.htpasswd == "" {
		return errors.New("--htpasswd: the token server needs its users")
	}
	users, err := tokenserver.LoadHtpasswd(o.htpasswd)
	if err != nil {
		return err
	}
	var grants tokenserver.Grants
	for _, g := range o.grants {
		gr, err := tokenserver.ParseGrant(g)
		if err != nil {
			return err
		}
		grants = append(grants, gr)
	}
	dir, err := datadir.Open(o.dataDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	ca, err := pki.Open(filepath.Join(dir.Path, "pki"))
	if err != nil {
		return err
	}
	key, err := ca.SigningKey("token-server")
	if err != nil {
		return err
	}
	signer, err := tokenauth.NewSigner(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Replace(filepath.Join(dir.Path, "jwks.json"), signer.JWKS(), 0o644); err != nil {
		return err
	}
	listener, err := listen.TCP(o.listen, "--listen")
	if err != nil {
		return err
	}
	if o.tlsCert != "" {
		if listener, err = withTLS(listener, o.tlsCert, o.tlsKey); err != nil {
			return err
		}
	}
	log := o.logger()
	mux := http.NewServeMux()
	mux.Handle("/token", &tokenserver.Server{
		Issuer: o.issuer, Service: o.service, Lifetime: tokenauth.MaxLifetime, Signer: signer,
		Authn: users, Authz: grants, Log: log.With("component", "token-server"),
		Metrics: tokenserver.NewMetrics(prometheus.NewRegistry()),
	})
	return serveUntilDone(ctx, o.out, fmt.Sprintf("token server is serving on %s", listener.Addr()), mux, listener, services.DefaultDrainTimeout)
}
