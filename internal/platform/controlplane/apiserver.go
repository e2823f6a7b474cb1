package controlplane

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// apiServerArgs are the kube-apiserver flags pullgate runs with. They are real flags
// of the real binary, so `kube-apiserver --help` documents each one.
func (p *paths) apiServerArgs(etcdURL string, port int, bindAddress string, serviceCIDR string, verbosity int) []string {
	return append([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + bindAddress,
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p.serving.CertFile,
		"--tls-private-key-file=" + p.serving.KeyFile,
		"--client-ca-file=" + p.caFile,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		// Admission webhooks are told who calls them: a client certificate.
		"--admission-control-config-file=" + p.admissionConfig,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		"--profiling=false",
		// The aggregation layer, for pullgate's OpenShift APIs (APIServices backed by
		// pullgate): user headers signed by the front-proxy CA. Routing stays the
		// service's own (not --enable-aggregator-routing): an ExternalName Service to
		// 127.0.0.1 reaches pullgate's listener, as up has no kube-proxy.
		"--requestheader-client-ca-file=" + p.frontProxyCAFile,
		"--requestheader-allowed-names=" + FrontProxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.proxyClient.CertFile,
		"--proxy-client-key-file=" + p.proxyClient.KeyFile,
		// Kubelets (up --node kubelet, or nodes that join) are reached by their
		// InternalIP with this client certificate, for logs, exec and port-forward.
		"--kubelet-client-certificate=" + p.kubeletClient.CertFile,
		"--kubelet-client-key=" + p.kubeletClient.KeyFile,
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--v=" + strconv.Itoa(verbosity),
	}, advertiseArgs(bindAddress)...)
}

// advertiseArgs publish the API server as Service kubernetes's endpoint when it
// listens on one address off loopback, so pods reach it (in-cluster config) through
// kube-proxy; on loopback or every address, Service kubernetes has no endpoint.
func advertiseArgs(bindAddress string) []string {
	if ip := net.ParseIP(bindAddress); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		return []string{"--advertise-address=" + bindAddress, "--endpoint-reconciler-type=lease"}
	}
	return []string{"--endpoint-reconciler-type=none"}
}

// parseAPIServerArgs reads args with the real kube-apiserver's flags.
func parseAPIServerArgs(args []string) (*options.ServerRunOptions, error) {
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("kube-apiserver flags: %w", err)
	}
	return s, nil
}

// runAPIServer runs the real kube-apiserver in this process until ctx ends. The
// listener is bound by the caller, so a port in use is reported before anything starts.
func runAPIServer(ctx context.Context, args []string, listener net.Listener) error {
	s, err := parseAPIServerArgs(args)
	if err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-apiserver feature gates: %w", err)
	}
	// The apiserver's loopback clients should not log the warnings they provoke.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	s.SecureServing.Listener = listener
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	return app.Run(ctx, completed)
}
