// Package controlplane owns the embedded Kubernetes control plane of `pullgate up`:
// one etcd member, the real kube-apiserver, kube-controller-manager and kube-scheduler, all
// in this process, with their PKI and kubeconfigs under one data directory. It is the
// only package of pullgate that imports k8s.io/kubernetes.
package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
	"pullgate.dev/pullgate/internal/platform/datadir"
	"pullgate.dev/pullgate/internal/platform/kubeconfig"
	"pullgate.dev/pullgate/internal/platform/listen"
	"pullgate.dev/pullgate/internal/platform/pki"
)

// Config is what `pullgate up` is asked to run.
type Config struct {
	DataDir     string
	APIPort     int
	BindAddress string
	// Controllers are the kube-controller-manager controllers to run.
	Controllers []string
	// Verbosity raises the embedded components' log level (klog -v).
	Verbosity int
	// Profiling serves the API server's /debug/pprof: up is one process, so its
	// profiles are all of up's (administrators only, as any non-resource URL).
	Profiling bool
	Logger    *slog.Logger
}

const (
	kubernetesSvcIP  = "10.96.0.1"
	readyTimeout     = 2 * time.Minute
	componentStopMax = 7 * time.Second
	adminUser        = "pullgate-admin"
)

// Plane is a running control plane.
type Plane struct {
	// AdminKubeconfig is the path of a kubeconfig with cluster-admin rights.
	AdminKubeconfig string
	// Server is the API server's URL.
	Server string
	// DataDir is the absolute data directory.
	DataDir string

	cancel  context.CancelFunc
	done    chan error
	stopped chan struct{}
}

// paths are the files in the data directory that the components are started with.
type paths struct {
	caFile                      string
	frontProxyCAFile            string
	proxyClient                 pki.KeyPair
	webhookClient               pki.KeyPair
	webhookKubeconfig           string
	admissionConfig             string
	kubeletClient               pki.KeyPair
	serving                     pki.KeyPair
	saKey, saPub                string
	admin, controllerManager    pki.KeyPair
	controllerManagerKubeconfig string
	scheduler                   pki.KeyPair
	schedulerKubeconfig         string
}

// Start brings the control plane up and returns once every /readyz check passes and
// the controller manager has provisioned the default service account. Bad input is
// reported before anything is written: an unwritable data directory, a port in use
// or an unreadable PKI file.
func Start(ctx context.Context, cfg Config) (*Plane, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	tameKlog(cfg.Verbosity)

	// The port first: a port in use must not leave a new data directory behind.
	listener, err := listen.TCP(net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.APIPort)), "--api-port")
	if err != nil {
		return nil, err
	}
	dir, err := datadir.Open(cfg.DataDir)
	if err != nil {
		listener.Close()
		return nil, err
	}
	if err := dir.RequireFree(datadir.MinFree); err != nil {
		listener.Close()
		dir.Close()
		return nil, err
	}
	p, err := preparePKI(dir.Path, cfg.BindAddress)
	if err != nil {
		listener.Close()
		dir.Close()
		return nil, err
	}
	server := "https://" + net.JoinHostPort(clientHost(cfg.BindAddress), strconv.Itoa(cfg.APIPort))
	plane := &Plane{
		AdminKubeconfig: filepath.Join(dir.Path, "admin.kubeconfig"),
		Server:          server,
		DataDir:         dir.Path,
		done:            make(chan error, 1),
		stopped:         make(chan struct{}),
	}
	if err := writeKubeconfigs(server, p, plane.AdminKubeconfig); err != nil {
		listener.Close()
		dir.Close()
		return nil, err
	}
	ports, err := listen.FreePorts(4) // etcd client, etcd peer, controller-manager and scheduler health
	if err != nil {
		listener.Close()
		dir.Close()
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	plane.cancel = cancel
	started := time.Now()
	etcd, err := startEtcd(ctx, filepath.Join(dir.Path, "etcd"), ports[0], ports[1], cfg.Verbosity)
	if err != nil {
		cancel()
		listener.Close()
		dir.Close()
		return nil, err
	}
	log.Info("etcd ready", "dir", filepath.Join(dir.Path, "etcd"), "took", time.Since(started).Round(time.Millisecond))

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	apiArgs := p.apiServerArgs(etcdURL, cfg.APIPort, cfg.BindAddress, ServiceCIDR, cfg.Verbosity)
	if cfg.Profiling {
		apiArgs = append(apiArgs, "--profiling=true") // the last of a flag wins
	}
	api := goRun("kube-apiserver", func() error { return runAPIServer(runCtx, apiArgs, listener) })

	controllers := cfg.Controllers
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	kcmArgs := p.controllerManagerArgs(controllers, ServiceCIDR, ports[2], cfg.Verbosity)
	schedulerArgs := p.schedulerArgs(ports[3], cfg.Verbosity)
	var kcm, scheduler *component

	go func() {
		<-runCtx.Done()
		api.waitStopped(log, componentStopMax)
		kcm.waitStopped(log, componentStopMax)
		scheduler.waitStopped(log, componentStopMax)
		etcd.Close()
		dir.Close()
		close(plane.stopped)
	}()

	readyCtx, readyCancel := context.WithTimeout(ctx, readyTimeout)
	defer readyCancel()
	err = waitReady(readyCtx, plane.AdminKubeconfig, ports[2], ports[3], api, func() (*component, *component) {
		kcm = goRun("kube-controller-manager", func() error { return runControllerManager(runCtx, kcmArgs) })
		scheduler = goRun("kube-scheduler", func() error { return runScheduler(runCtx, schedulerArgs) })
		return kcm, scheduler
	})
	if err != nil {
		plane.Stop()
		return nil, err
	}
	go plane.watch(runCtx, []*component{api, kcm, scheduler}, etcd.Err())
	log.Info("control plane ready", "server", server, "took", time.Since(started).Round(time.Millisecond))
	return plane, nil
}

// Done reports a component that stopped on its own; the plane is then unusable.
func (p *Plane) Done() <-chan error { return p.done }

// Stop shuts every component down and waits, within a bound, for them to finish.
func (p *Plane) Stop() {
	p.cancel()
	<-p.stopped
}

func (p *Plane) watch(ctx context.Context, components []*component, etcdErr <-chan error) {
	exited := make(chan *component, len(components))
	for _, c := range components {
		go func() {
			select {
			case <-c.done:
				exited <- c
			case <-ctx.Done():
			}
		}()
	}
	select {
	case c := <-exited:
		p.done <- c.exitErr()
	case err := <-etcdErr:
		p.done <- fmt.Errorf("etcd stopped: %w", err)
	case <-ctx.Done():
	}
}

// clientHost is the host clients use to reach an API server bound to bindAddress.
func clientHost(bindAddress string) string {
	if ip := net.ParseIP(bindAddress); ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return bindAddress
}

// FrontProxyClientName is the aggregation layer's client certificate's common name,
// the one --requestheader-allowed-names allows.
const FrontProxyClientName = "front-proxy-client"

// WebhookClientName is the common name of the client certificate the API server
// presents to admission webhooks; FrontProxyCAFile signed it.
const WebhookClientName = "pullgate:apiserver-webhook-client"

// writeAdmissionConfig makes the API server present p.webhookClient to every
// admission webhook (WebhookAdmissionConfiguration's kubeconfig, user "*").
func writeAdmissionConfig(p *paths) error {
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n    client-certificate: %q\n    client-key: %q\n", p.webhookClient.CertFile, p.webhookClient.KeyFile)
	if err := atomicfile.Replace(p.webhookKubeconfig, []byte(kc), 0o600); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n")
	for _, plugin := range []string{"MutatingAdmissionWebhook", "ValidatingAdmissionWebhook"} {
		fmt.Fprintf(&b, "- name: %s\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: %q\n", plugin, p.webhookKubeconfig)
	}
	return atomicfile.Replace(p.admissionConfig, []byte(b.String()), 0o600)
}

// ServiceCIDR is the range of Services' cluster IPs.
const ServiceCIDR = "10.96.0.0/12"

// KubeletClientUser is the user the API server presents to kubelets (logs, exec,
// port-forward); a node lets it in with system:kubelet-api-admin, as kubeadm does.
const KubeletClientUser = "pullgate:apiserver-kubelet-client"

// FrontProxyCAFile is the CA of the aggregation layer's client certificate, under a
// data directory: aggregated API servers trust requests it signed.
func FrontProxyCAFile(dataDir string) string {
	return filepath.Join(dataDir, "pki", "front-proxy", pki.CAFile)
}

func preparePKI(dataDir, bindAddress string) (*paths, error) {
	ca, err := pki.Open(filepath.Join(dataDir, "pki"))
	if err != nil {
		return nil, err
	}
	hosts := []string{"localhost", "127.0.0.1", "::1", kubernetesSvcIP,
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if name, err := os.Hostname(); err == nil && name != "" && name != "localhost" {
		hosts = append(hosts, name)
	}
	if ip := net.ParseIP(bindAddress); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		hosts = append(hosts, bindAddress)
	}
	serving, err := ca.ServingCert("apiserver", hosts)
	if err != nil {
		return nil, err
	}
	saKey, saPub, err := ca.ServiceAccountKeys()
	if err != nil {
		return nil, err
	}
	admin, err := ca.ClientCert("admin", adminUser, "system:masters")
	if err != nil {
		return nil, err
	}
	kcm, err := ca.ClientCert("controller-manager", "system:kube-controller-manager")
	if err != nil {
		return nil, err
	}
	scheduler, err := ca.ClientCert("scheduler", "system:kube-scheduler")
	if err != nil {
		return nil, err
	}
	// The aggregation layer's own CA: the API server proves with its client
	// certificate (CN front-proxy-client) to aggregated API servers — pullgate's
	// OpenShift APIs — that the user headers it sends are its own.
	frontProxy, err := pki.Open(filepath.Join(dataDir, "pki", "front-proxy"))
	if err != nil {
		return nil, err
	}
	proxyClient, err := frontProxy.ClientCert("front-proxy-client", FrontProxyClientName)
	if err != nil {
		return nil, err
	}
	// What the API server presents to admission webhooks (pullgate's image lookup):
	// of the front-proxy CA with another name than the one the API server allows, so
	// it proves the caller to a webhook and is worth nothing to the API server.
	webhookClient, err := frontProxy.ClientCert("apiserver-webhook-client", WebhookClientName)
	if err != nil {
		return nil, err
	}
	kubeletClient, err := ca.ClientCert("apiserver-kubelet-client", KubeletClientUser)
	if err != nil {
		return nil, err
	}
	return &paths{
		kubeletClient:               kubeletClient,
		frontProxyCAFile:            filepath.Join(frontProxy.Path, pki.CAFile),
		proxyClient:                 proxyClient,
		webhookClient:               webhookClient,
		webhookKubeconfig:           filepath.Join(dataDir, "webhook-client.kubeconfig"),
		admissionConfig:             filepath.Join(dataDir, "admission.yaml"),
		caFile:                      filepath.Join(ca.Path, pki.CAFile),
		serving:                     serving,
		saKey:                       saKey,
		saPub:                       saPub,
		admin:                       admin,
		controllerManager:           kcm,
		controllerManagerKubeconfig: filepath.Join(dataDir, "controller-manager.kubeconfig"),
		scheduler:                   scheduler,
		schedulerKubeconfig:         filepath.Join(dataDir, "scheduler.kubeconfig"),
	}, nil
}

func writeKubeconfigs(server string, p *paths, adminPath string) error {
	if err := kubeconfig.WriteClientCert(adminPath, "pullgate", server, p.caFile, p.admin); err != nil {
		return err
	}
	if err := kubeconfig.WriteClientCert(p.controllerManagerKubeconfig, "pullgate", server, p.caFile, p.controllerManager); err != nil {
		return err
	}
	if err := writeAdmissionConfig(p); err != nil {
		return err
	}
	return kubeconfig.WriteClientCert(p.schedulerKubeconfig, "pullgate", server, p.caFile, p.scheduler)
}
