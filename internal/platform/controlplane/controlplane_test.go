package controlplane

import (
	"pullgate.dev/pullgate/internal/platform/listen"

	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// fileArgs are the values of args that name files: each must exist.
func fileArgs(t *testing.T, args []string) {
	t.Helper()
	for _, a := range args {
		flag, value, _ := strings.Cut(a, "=")
		if strings.HasSuffix(flag, "-file") || strings.HasSuffix(flag, "kubeconfig") {
			if _, err := os.Stat(value); err != nil {
				t.Errorf("%s names a file that is not there: %v", flag, err)
			}
		}
	}
}

// The three components' arguments are real flags of the real binaries (parsed by
// their own flag sets, as at run time), name files the PKI step wrote, and say what
// up means: the ports given, etcd's URL, every default controller by a name the
// controller manager knows.
func TestComponentArguments(t *testing.T) {
	dir := t.TempDir()
	p, err := preparePKI(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfigs("https://127.0.0.1:6443", p, admin); err != nil {
		t.Fatal(err)
	}
	for _, kc := range []string{admin, p.controllerManagerKubeconfig, p.schedulerKubeconfig} {
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil || cfg.Host != "https://127.0.0.1:6443" {
			t.Errorf("%s: %v %v", kc, cfg, err)
		}
	}

	apiArgs := p.apiServerArgs("http://127.0.0.1:2379", 6443, "127.0.0.1", "10.96.0.0/12", 0)
	fileArgs(t, apiArgs)
	api, err := parseAPIServerArgs(apiArgs)
	if err != nil {
		t.Fatal(err)
	}
	if api.SecureServing.BindPort != 6443 || !slices.Equal(api.Etcd.StorageConfig.Transport.ServerList, []string{"http://127.0.0.1:2379"}) {
		t.Errorf("kube-apiserver: port %d, etcd %v", api.SecureServing.BindPort, api.Etcd.StorageConfig.Transport.ServerList)
	}
	if !slices.Contains(api.Authorization.Modes, "RBAC") {
		t.Errorf("kube-apiserver authorization modes %v: RBAC decides who pulls", api.Authorization.Modes)
	}

	kcmArgs := p.controllerManagerArgs(DefaultControllers, "10.96.0.0/12", 10257, 0)
	fileArgs(t, kcmArgs)
	kcm, err := parseControllerManagerArgs(kcmArgs)
	if err != nil {
		t.Fatal(err)
	}
	if err := kcm.Validate(kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()); err != nil {
		t.Errorf("kube-controller-manager refuses pullgate's options: %v", err)
	}
	if !slices.Equal(kcm.Generic.Controllers, DefaultControllers) {
		t.Errorf("controllers %v", kcm.Generic.Controllers)
	}

	schedArgs := p.schedulerArgs(10259, 0)
	fileArgs(t, schedArgs)
	sched, err := parseSchedulerArgs(schedArgs)
	if err != nil {
		t.Fatal(err)
	}
	if sched.SecureServing.BindPort != 10259 {
		t.Errorf("kube-scheduler port %d", sched.SecureServing.BindPort)
	}
	if _, err := parseAPIServerArgs([]string{"--no-such-flag=1"}); err == nil {
		t.Error("an unknown kube-apiserver flag was accepted")
	}
}

// The PKI step is idempotent: a second start reuses the CA and the keys.
func TestPreparePKIReuses(t *testing.T) {
	dir := t.TempDir()
	first, err := preparePKI(dir, "0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(first.caFile)
	second, err := preparePKI(dir, "0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	ca2, _ := os.ReadFile(second.caFile)
	if len(ca1) == 0 || string(ca1) != string(ca2) || first.saKey != second.saKey {
		t.Error("a second start made a new CA or service-account key")
	}
}

// poll waits for ready, and stops early, saying why, when the component exits or
// the start is abandoned.
func TestPoll(t *testing.T) {
	ctx := context.Background()
	calls := 0
	stop := make(chan struct{})
	defer close(stop)
	running := goRun("api", func() error { <-stop; return nil })
	if err := poll(ctx, running, func() bool { calls++; return calls == 3 }); err != nil || calls != 3 {
		t.Errorf("ready on the third check: %v after %d", err, calls)
	}
	exited := goRun("kube-apiserver", func() error { return errors.New("port in use") })
	<-exited.done
	if err := poll(ctx, exited, func() bool { return false }); err == nil || !strings.Contains(err.Error(), "kube-apiserver: port in use") {
		t.Errorf("an exited component: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 3*readyPoll)
	defer cancel()
	if err := poll(short, running, func() bool { return false }); err == nil || !strings.Contains(err.Error(), "api not ready") {
		t.Errorf("a start abandoned: %v", err)
	}
}

// Clients reach an API server bound to every address on loopback, else on its
// address; the free ports are distinct.
func TestClientHostAndPorts(t *testing.T) {
	for bind, want := range map[string]string{"0.0.0.0": "127.0.0.1", "::": "127.0.0.1", "": "127.0.0.1", "10.0.0.5": "10.0.0.5", "127.0.0.1": "127.0.0.1"} {
		if got := clientHost(bind); got != want {
			t.Errorf("clientHost(%q) = %q, want %q", bind, got, want)
		}
	}
	ports, err := listen.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ports)
	if len(slices.Compact(ports)) != 4 {
		t.Errorf("ports %v", ports)
	}
}

// waitReady starts the controller manager and scheduler only once the API server's
// /readyz says ok, and is ready only when the controller manager lists its
// controllers, the scheduler answers and the default service account exists.
func TestWaitReadyInOrder(t *testing.T) {
	var mu sync.Mutex
	apiReady, restStarted, saAsked := false, false, 0
	readyzCalls, kcmCalls := 0, 0
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/readyz":
			readyzCalls++
			if readyzCalls < 3 {
				http.Error(w, "[-]etcd failed", http.StatusInternalServerError)
				return
			}
			apiReady = true
			fmt.Fprint(w, "ok")
		case "/api/v1/namespaces/default/serviceaccounts/default":
			saAsked++
			if saAsked < 2 {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default","namespace":"default"}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	kcm := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		kcmCalls++
		if kcmCalls < 3 {
			fmt.Fprint(w, "[+]leaderElection ok\n") // serving, controllers not built yet
			return
		}
		fmt.Fprint(w, "[+]serviceaccount-controller ok\n")
	}))
	defer kcm.Close()
	sched := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer sched.Close()

	kubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: api.URL, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	block := func() error { <-stop; return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := waitReady(ctx, kubeconfig, port(t, kcm.URL), port(t, sched.URL), goRun("kube-apiserver", block), func() (*component, *component) {
		mu.Lock()
		defer mu.Unlock()
		if !apiReady {
			t.Error("the controller manager and scheduler started before the API server was ready")
		}
		restStarted = true
		return goRun("kube-controller-manager", block), goRun("kube-scheduler", block)
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil || !restStarted || kcmCalls < 3 || saAsked < 2 {
		t.Errorf("waitReady: %v (rest started %v, controller manager asked %d times, service account %d)", err, restStarted, kcmCalls, saAsked)
	}
}

func port(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Bound to one address off loopback, the API server is Service kubernetes's endpoint
// (pods reach it); on loopback or every address, Service kubernetes has none.
func TestAPIServerAdvertisesOnlyAReachableAddress(t *testing.T) {
	p, err := preparePKI(t.TempDir(), "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	for bind, want := range map[string]string{
		"192.0.2.2": "lease",
		"127.0.0.1": "none",
		"0.0.0.0":   "none",
	} {
		api, err := parseAPIServerArgs(p.apiServerArgs("http://127.0.0.1:2379", 6443, bind, "10.96.0.0/12", 0))
		if err != nil {
			t.Fatal(err)
		}
		if api.EndpointReconcilerType != want {
			t.Errorf("bound to %s: endpoint reconciler %q, want %q", bind, api.EndpointReconcilerType, want)
		}
		if want == "lease" && api.GenericServerRunOptions.AdvertiseAddress.String() != bind {
			t.Errorf("bound to %s: advertises %v", bind, api.GenericServerRunOptions.AdvertiseAddress)
		}
	}
}

// up --profiling turns the API server's /debug/pprof on by adding the flag after the
// rest (the last of a flag wins); without it profiling stays off.
func TestProfilingIsOffUnlessAsked(t *testing.T) {
	p, err := preparePKI(t.TempDir(), "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	args := p.apiServerArgs("http://127.0.0.1:2379", 6443, "127.0.0.1", "10.96.0.0/12", 0)
	for extra, want := range map[string]bool{"": false, "--profiling=true": true} {
		all := args
		if extra != "" {
			all = append(append([]string{}, args...), extra)
		}
		api, err := parseAPIServerArgs(all)
		if err != nil {
			t.Fatal(err)
		}
		if api.Features.EnableProfiling != want {
			t.Errorf("with %q: profiling %v, want %v", extra, api.Features.EnableProfiling, want)
		}
	}
}
