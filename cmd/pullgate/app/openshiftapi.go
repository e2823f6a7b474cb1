package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"pullgate.dev/pullgate/internal/controller/imagetrigger"
	"pullgate.dev/pullgate/internal/openshift/apiserver"
	"pullgate.dev/pullgate/internal/openshift/imagelookup"
	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/platform/controlplane"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/internal/services"
)

// startOpenShiftAPI serves project.openshift.io, authorization.openshift.io and
// image.openshift.io on loopback and registers them with the API server's
// aggregation layer, so that the real oc's new-project, policy who-can and registry
// info work against up. It acts as up's administrator once the API server has
// authorized the user.
// openShiftSettings are up's flags for the OpenShift APIs.
type openShiftSettings struct {
	importInterval      time.Duration
	selfProvisioners    []string
	setSelfProvisioners bool
}

func startOpenShiftAPI(ctx context.Context, plane *controlplane.Plane, running *services.Running, settings openShiftSettings, log *slog.Logger) error {
	authz, ok := running.Authz.(apiserver.Authorizer)
	if !ok {
		return fmt.Errorf("the services' authorizer cannot list who may do what")
	}
	adminConfig, err := clientcmd.BuildConfigFromFlags("", plane.AdminKubeconfig)
	if err != nil {
		return err
	}
	// Every user's request is a few API calls here: client-go's default 5 per second
	// made the third oc tag in a row wait 380 ms on the client's own rate limiter.
	adminConfig = services.WithRateLimits(adminConfig)
	client, err := kubernetes.NewForConfig(adminConfig)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(adminConfig)
	if err != nil {
		return err
	}
	ca, err := pki.Open(filepath.Join(plane.DataDir, "pki"))
	if err != nil {
		return err
	}
	pair, err := ca.ServingCert("openshift-apiserver", []string{apiserver.ServiceName + "." + apiserver.ServiceNamespace + ".svc", "localhost", "127.0.0.1"})
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		return err
	}
	tlsConfig, err := apiserver.TLSConfig(cert, controlplane.FrontProxyCAFile(plane.DataDir))
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(ca.Path, pki.CAFile))
	if err != nil {
		return err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	roots.AppendCertsFromPEM(caPEM)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	server := &apiserver.Server{Client: client, Dynamic: dyn, Authz: authz, RegistryHost: running.RegistryHost,
		Images:          images.NewRegistry(running.RegistryHost, &images.AccountAuth{Client: client, Audience: tokenauth.Service}, transport),
		ProxyClientName: controlplane.FrontProxyClientName, Log: log}
	srv := &http.Server{Handler: server.Handler(), TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(tls.NewListener(l, tlsConfig)); err != nil && err != http.ErrServerClosed {
			log.Error("OpenShift APIs stopped", "err", err)
		}
	}()
	go func() { <-ctx.Done(); srv.Close() }()
	go server.RunScheduledImports(ctx, settings.importInterval)
	if err := startImageLookup(ctx, client, running, cert, controlplane.FrontProxyCAFile(plane.DataDir), caPEM, log); err != nil {
		return err
	}
	if err := apiserver.Register(ctx, client, dyn, "127.0.0.1", l.Addr().(*net.TCPAddr).Port, caPEM); err != nil {
		return err
	}
	if settings.setSelfProvisioners {
		if err := server.SetSelfProvisioners(ctx, settings.selfProvisioners); err != nil {
			return err
		}
	}
	return server.InstallShared(ctx)
}

// startImageLookup serves the image lookup webhook (a stream's lookupPolicy.local,
// oc set image-lookup, and image-change triggers at create and update) on loopback
// over TLS and registers it with the API server. Only the API server may call it:
// its webhook client certificate (front-proxy CA, controlplane.WebhookClientName) is
// required.
func startImageLookup(ctx context.Context, client kubernetes.Interface, running *services.Running, cert tls.Certificate, callerCA string, caPEM []byte, log *slog.Logger) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tlsConfig, err := apiserver.TLSConfig(cert, callerCA)
	if err != nil {
		return err
	}
	serveImageLookup(ctx, tls.NewListener(l, tlsConfig), running, controlplane.WebhookClientName, log)
	return imagelookup.Register(ctx, client, "https://"+l.Addr().String()+imagelookup.DeployPath, caPEM)
}

// serveImageLookup serves the webhook at imagelookup.DeployPath on listener until
// ctx ends, from the registry's stream and RBAC informers; with caller set, only a
// client whose verified certificate has that name is answered.
func serveImageLookup(ctx context.Context, listener net.Listener, running *services.Running, caller string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("POST "+imagelookup.DeployPath, &imagelookup.Webhook{
		Resolver: imagelookup.Resolver{Streams: running.Streams, RegistryHost: running.RegistryHost},
		Triggers: &imagetrigger.Resolver{Streams: running.Streams, Authz: running.Authz, RegistryHost: running.RegistryHost},
		Caller:   caller,
		Log:      log})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(listener); err != nil && err != http.ErrServerClosed {
			log.Error("image lookup webhook stopped", "err", err)
		}
	}()
	go func() { <-ctx.Done(); srv.Close() }()
}
