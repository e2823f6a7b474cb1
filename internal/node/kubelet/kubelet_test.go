package kubelet

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// containerd's configuration keeps all of its state under the node's directory and
// run directory, and holds the settings a node here needs.
func TestContainerdConfig(t *testing.T) {
	f := FilesFor("/data/nodes/local")
	got := containerdConfig(f, "/usr/lib/cni")
	for _, want := range []string{
		`root = "/data/nodes/local/containerd/root"`,
		`state = "` + f.RunDir + `/state"`,
		`address = "` + f.RunDir + `/containerd.sock"`,
		"restrict_oom_score_adj = true",
		"netns_mounts_under_state_dir = true",
		`sandbox_image = "` + SandboxImage + `"`,
		`config_path = "/data/nodes/local/certs.d"`,
		`path = "/data/nodes/local/containerd/opt"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config.toml lacks %s:\n%s", want, got)
		}
	}
	if len(f.ContainerdSocket()) > 107 {
		t.Errorf("socket path %q is longer than a unix socket's 107 bytes", f.ContainerdSocket())
	}
	if FilesFor("/other").RunDir == f.RunDir {
		t.Error("two data directories share a run directory")
	}
}

// The registry is trusted as up serves it: plain HTTP on loopback, else TLS with up's CA.
func TestHostsTOML(t *testing.T) {
	if got := hostsTOML("localhost:5000", "http", "/ca.crt"); !strings.Contains(got, `server = "http://localhost:5000"`) || strings.Contains(got, "ca =") {
		t.Errorf("http: %s", got)
	}
	if got := hostsTOML("r.example:5000", "https", "/ca.crt"); !strings.Contains(got, `server = "https://r.example:5000"`) || !strings.Contains(got, `ca = "/ca.crt"`) {
		t.Errorf("https: %s", got)
	}
}

func TestKubeletConfig(t *testing.T) {
	got := kubeletConfig(FilesFor("/d"), KubeletOptions{IP: net.ParseIP("192.0.2.2"), Port: 10250, HealthzPort: 10248, CAFile: "/ca.crt"})
	for _, want := range []string{"address: 192.0.2.2", "failCgroupV1: false", "anonymous: {enabled: false}", "mode: Webhook",
		"clientCAFile: /ca.crt", "imagePullCredentialsVerificationPolicy: NeverVerifyPreloadedImages", "nodefs.available: 1%"} {
		if !strings.Contains(got, want) {
			t.Errorf("kubelet config lacks %q:\n%s", want, got)
		}
	}
}

// iptables -S lines are split as the shell would, comments kept whole, so a rule can
// be deleted with the arguments it was listed with.
func TestSplitRule(t *testing.T) {
	got := splitRule(`-A INPUT -m comment --comment "kubernetes health check rules" -j KUBE-NODEPORTS`)
	want := []string{"-A", "INPUT", "-m", "comment", "--comment", "kubernetes health check rules", "-j", "KUBE-NODEPORTS"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A table iptables-nft made with only its built-in chains may go; one with a rule not.
func TestOnlyChains(t *testing.T) {
	empty := "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
	if !onlyChains(empty) {
		t.Error("a table of empty chains should be removable")
	}
	if onlyChains(strings.Replace(empty, "policy accept;\n", "policy accept;\n\t\tip saddr 10.0.0.1 drop\n", 1)) {
		t.Error("a table with a rule must be kept")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b/c`); got != "/a b/c" {
		t.Errorf("got %q", got)
	}
}

// As an ordinary user the node is refused in one line that says what to do.
func TestCheckAsOrdinaryUser(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: the ordinary user's refusal is tested in test/realnode by running up as nobody")
	}
	err := Check(Binaries{})
	if err == nil || !strings.Contains(err.Error(), "must run as root") || !strings.Contains(err.Error(), "--node agent") {
		t.Errorf("Check: %v", err)
	}
}

// The pause image has a platform and runs /pause.
func TestPauseImage(t *testing.T) {
	bin := t.TempDir() + "/pause"
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := pauseImage(bin)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture == "" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/pause" {
		t.Errorf("config %+v", cfg)
	}
}

func TestTrustRegistryWritesHostsTOMLWithTheCA(t *testing.T) {
	dir := t.TempDir()
	if err := TrustRegistry(dir, "r.example.com:5443", "/ca.crt"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "certs.d", "r.example.com:5443", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `server = "https://r.example.com:5443"`) || !strings.Contains(string(got), `ca = "/ca.crt"`) {
		t.Errorf("hosts.toml:\n%s", got)
	}
}
