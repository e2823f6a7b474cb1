package app

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// upWith parses args as `pullgate up` would and validates them.
func upWith(t *testing.T, args ...string) (*upOptions, error) {
	t.Helper()
	o := &upOptions{globalOptions: &globalOptions{out: io.Discard, errOut: io.Discard}}
	cmd := upCommand(o)
	if err := cmd.Flags().Parse(args); err != nil {
		return o, err
	}
	return o, o.Validate()
}

// up's flags decide which components run and how: by default the controllers and
// pull secrets on, the registry on loopback over plain HTTP keeping 1 GiB free;
// each flag turns its part off or changes it.
func TestUpFlagsMakeServicesConfig(t *testing.T) {
	ids := [3]*rest.Config{{Host: "registry"}, {Host: "token"}, {Host: "controllers"}}
	log := slog.New(slog.DiscardHandler)
	o, err := upWith(t, "--data-dir", "/d")
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.servicesConfig("/d", []string{"localhost:5000"}, ids, log)
	if cfg.NoControllers || cfg.NoPullSecrets || cfg.Scheme != "http" || cfg.StorageReserve != 1<<30 || cfg.PruneInterval != 0 {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.KubeConfig.Host != "registry" || cfg.TokenReviewConfig.Host != "token" || cfg.ControllersConfig.Host != "controllers" {
		t.Error("a component was given another's identity")
	}
	if !strings.HasPrefix(cfg.Identity, "pullgate-up@") {
		t.Errorf("identity %q: up must take its Lease back after a restart", cfg.Identity)
	}
	o, err = upWith(t, "--data-dir", "/d", "--leader-elect=false", "--serviceaccount-pull-secrets=false",
		"--registry-storage-reserve=0", "--registry-bind-address=0.0.0.0", "--prune-interval=1h", "--blob-transfer=sendfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg = o.servicesConfig("/d", nil, ids, log)
	if !cfg.NoControllers || !cfg.NoPullSecrets || cfg.Scheme != "https" || cfg.StorageReserve != -1 || cfg.PruneInterval == 0 || cfg.BlobTransfer != "sendfile" {
		t.Errorf("flags: %+v", cfg)
	}
}

// Bad flags are refused before anything starts, each naming the flag.
func TestUpValidate(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--api-port=0"}, "--api-port 0"},
		{[]string{"--registry-port=70000"}, "--registry-port 70000"},
		{[]string{"--registry-port=6443"}, "the API server already uses it"},
		{[]string{"--blob-transfer=mmap"}, `--blob-transfer "mmap"`},
		{[]string{"--registry-storage-reserve=lots"}, `--registry-storage-reserve "lots"`},
		{[]string{"--registry-storage-reserve=1MiB"}, "needs"},
		{[]string{"--data-dir="}, "--data-dir"},
		{[]string{"--node=docker"}, `--node "docker": want agent, kubelet or none`},
	} {
		if _, err := upWith(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}

// The registry answers to its host, localhost and 127.0.0.1 on its port, and the
// names given, each once, in that order.
func TestRegistryNames(t *testing.T) {
	got := registryNames("localhost:5000", 5000, []string{"r.example:5000", "127.0.0.1:5000"})
	if want := []string{"localhost:5000", "127.0.0.1:5000", "r.example:5000"}; !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
}

// The node's credential provider configuration names the registry's hosts, and its
// bin directory holds the plugin, again at every start.
func TestWriteCredentialProvider(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		files, err := writeCredentialProvider(dir, []string{"localhost:5000", "r.example:5000"})
		if err != nil {
			t.Fatal(err)
		}
		config, err := os.ReadFile(files.config)
		if err != nil || !strings.Contains(string(config), "r.example:5000") {
			t.Errorf("config: %v\n%s", err, config)
		}
		target, err := os.Readlink(filepath.Join(files.binDir, "pullgate-credential-provider"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(target); err != nil {
			t.Errorf("the plugin links to %s, which is not there", target)
		}
	}
}

func TestBypassProxyOnlyWhenAProxyIsSet(t *testing.T) {
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
	bypassProxy("192.0.2.2")
	if got := os.Getenv("NO_PROXY"); got != "" {
		t.Errorf("no proxy set, NO_PROXY=%q", got)
	}
	t.Setenv("HTTPS_PROXY", "http://proxy:3128")
	t.Setenv("no_proxy", "example.com")
	bypassProxy("192.0.2.2", "10.96.0.0/12")
	if got := os.Getenv("NO_PROXY"); got != "192.0.2.2,10.96.0.0/12" {
		t.Errorf("NO_PROXY=%q", got)
	}
	if got := os.Getenv("no_proxy"); got != "example.com,192.0.2.2,10.96.0.0/12" {
		t.Errorf("no_proxy=%q", got)
	}
}
