package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const readyPoll = 50 * time.Millisecond

// waitReady waits for every /readyz check of the API server, then starts the
// controller manager and the scheduler and waits until the controller manager's
// /healthz lists its controllers (all are built and started), the scheduler's /healthz
// is ok, and the default namespace has its default service account: the first thing
// a user's `kubectl create ns` relies on.
func waitReady(ctx context.Context, adminKubeconfig string, kcmHealthPort, schedulerHealthPort int, api *component, startRest func() (kcm, scheduler *component)) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", adminKubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", adminKubeconfig, err)
	}
	cfg.Timeout = 2 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	apiReady := func() bool {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok"
	}
	saReady := func() bool {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}
	controllersStarted := func() bool {
		body, ok := loopbackHealth(kcmHealthPort)
		return ok && strings.Contains(body, "-controller ok")
	}
	schedulerStarted := func() bool {
		_, ok := loopbackHealth(schedulerHealthPort)
		return ok
	}
	if err := poll(ctx, api, apiReady); err != nil {
		return err
	}
	kcm, scheduler := startRest()
	if err := poll(ctx, kcm, controllersStarted); err != nil {
		return err
	}
	if err := poll(ctx, scheduler, schedulerStarted); err != nil {
		return err
	}
	return poll(ctx, kcm, saReady)
}

// The controller manager and the scheduler serve self-signed certificates on
// loopback; only their health is read here.
var healthClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe
}}

// loopbackHealth reads https://127.0.0.1:port/healthz?verbose.
func loopbackHealth(port int) (string, bool) {
	resp, err := healthClient.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz?verbose", port))
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode == http.StatusOK
}

func poll(ctx context.Context, c *component, ready func() bool) error {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for !ready() {
		select {
		case <-c.done:
			return fmt.Errorf("while starting: %w", c.exitErr())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", c.name, context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}
