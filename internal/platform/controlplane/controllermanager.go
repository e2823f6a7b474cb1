package controlplane

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// DefaultControllers are the kube-controller-manager controllers `pullgate up` runs:
// what namespaces, service accounts, owner references, RBAC aggregation and the
// workload APIs need, node lifecycle, which lifts the not-ready taint from a node
// that reports Ready and taints one whose heartbeats stop, and EndpointSlices, by
// which kube-proxy (up --node kubelet) routes a Service to its ready pods. Volume and
// cloud controllers are left out.
var DefaultControllers = []string{
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"cronjob-controller",
	"ttl-after-finished-controller",
	"pod-garbage-collector-controller",
	"node-lifecycle-controller",
	"endpointslice-controller",
}

// controllerManagerArgs serves the controller manager's /healthz on a loopback port:
// pullgate waits there until every controller is built before it reports ready. It
// talks to the local API server at 1000 requests/s.
func (p *paths) controllerManagerArgs(controllers []string, serviceCIDR string, healthPort int, verbosity int) []string {
	return []string{
		"--kubeconfig=" + p.controllerManagerKubeconfig,
		"--authentication-kubeconfig=" + p.controllerManagerKubeconfig,
		"--authorization-kubeconfig=" + p.controllerManagerKubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(healthPort),
		"--controllers=" + strings.Join(controllers, ","),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p.saKey,
		"--root-ca-file=" + p.caFile,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--leader-elect=false",
		// client-go's default 20 requests/s made a burst of 10,000 namespaces wait
		// minutes for their default service accounts; the API server is local.
		"--kube-api-qps=1000",
		"--kube-api-burst=2000",
		"--v=" + strconv.Itoa(verbosity),
	}
}

// parseControllerManagerArgs reads args with the real kube-controller-manager's flags.
func parseControllerManagerArgs(args []string) (*options.KubeControllerManagerOptions, error) {
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager options: %w", err)
	}
	named := s.Flags(app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases())
	s.ParsedFlags = &named
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("kube-controller-manager flags: %w", err)
	}
	return s, nil
}

// runControllerManager runs the real kube-controller-manager in this process until ctx ends.
func runControllerManager(ctx context.Context, args []string) error {
	s, err := parseControllerManagerArgs(args)
	if err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-controller-manager feature gates: %w", err)
	}
	c, err := s.Config(ctx, app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases())
	if err != nil {
		return fmt.Errorf("kube-controller-manager config: %w", err)
	}
	return app.Run(ctx, c.Complete())
}
