package app

import (
	"context"
	"crypto/tls"
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

	"pullgate.dev/pullgate/internal/openshift/apiserver"
	"pullgate.dev/pullgate/internal/platform/controlplane"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/internal/services"
)

// startOpenShiftAPI serves project.openshift.io, authorization.openshift.io and
// image.openshift.io on loopback and registers them with the API server's
// aggregation layer, so that the real oc's new-project, policy who-can and registry
// info work against up. It acts as up's administrator once the API server has
// authorized the user.
func startOpenShiftAPI(ctx context.Context, plane *controlplane.Plane, running *services.Running, log *slog.Logger) error {
	authz, ok := running.Authz.(apiserver.Authorizer)
	if !ok {
		return fmt.Errorf("the services' authorizer cannot list who may do what")
	}
	adminConfig, err := clientcmd.BuildConfigFromFlags("", plane.AdminKubeconfig)
	if err != nil {
		return err
	}
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
	srv := &http.Server{
		Handler: (&apiserver.Server{Client: client, Dynamic: dyn, Authz: authz, RegistryHost: running.RegistryHost,
			ProxyClientName: controlplane.FrontProxyClientName, Log: log}).Handler(),
		TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := srv.Serve(tls.NewListener(l, tlsConfig)); err != nil && err != http.ErrServerClosed {
			log.Error("OpenShift APIs stopped", "err", err)
		}
	}()
	go func() { <-ctx.Done(); srv.Close() }()
	caPEM, err := os.ReadFile(filepath.Join(ca.Path, pki.CAFile))
	if err != nil {
		return err
	}
	return apiserver.Register(ctx, client, dyn, "127.0.0.1", l.Addr().(*net.TCPAddr).Port, caPEM)
}
