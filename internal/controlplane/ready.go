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
// controller manager and waits until its /healthz lists its controllers (all are
// built and started) and the default namespace has its default service account:
// the first thing a user's `kubectl create ns` relies on.
func waitReady(ctx context.Context, adminKubeconfig string, kcmHealthPort int, api *component, startControllerManager func() *component) error {
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
	// The controller manager serves a self-signed certificate on loopback; only its
	// health is read here.
	kcmHealth := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe
	}}
	kcmURL := fmt.Sprintf("https://127.0.0.1:%d/healthz?verbose", kcmHealthPort)
	controllersStarted := func() bool {
		resp, err := kcmHealth.Get(kcmURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "-controller ok")
	}
	if err := poll(ctx, api, apiReady); err != nil {
		return err
	}
	kcm := startControllerManager()
	if err := poll(ctx, kcm, controllersStarted); err != nil {
		return err
	}
	return poll(ctx, kcm, saReady)
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
