package app

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/distribution/distribution/v3/configuration"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// fakeLock records that a prune took the lock.
type fakeLock struct{ held int }

func (l *fakeLock) Hold(ctx context.Context, _ bool, fn func(context.Context) error) error {
	l.held++
	return fn(ctx)
}

func (l *fakeLock) Held(context.Context) (bool, error) { return false, nil }

// adm prune reports what it would reclaim without the lock, takes the lock to delete,
// and refuses a storage parameter that is not key=value, naming it.
func TestPruneCommand(t *testing.T) {
	if _, err := storageConfig("s3", []string{"bucket"}, "/d"); err == nil || !strings.Contains(err.Error(), `--storage-param "bucket"`) {
		t.Errorf("a parameter without =: %v", err)
	}
	cfg, err := storageConfig("filesystem", nil, "/d")
	if err != nil || cfg.Parameters()["rootdirectory"] != "/d/registry/storage" {
		t.Errorf("filesystem storage defaults to up's: %v %v", cfg, err)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{imageapi.GVR: "ImageStreamList"})
	for _, confirm := range []bool{false, true} {
		out := &bytes.Buffer{}
		s := genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: io.Discard}
		lock := &fakeLock{}
		o := &PruneOptions{IOStreams: s, Confirm: confirm, Storage: configuration.Storage{"inmemory": configuration.Parameters{}},
			Streams: imageapi.Streams{Client: dyn}, Lock: lock}
		if err := o.Run(context.Background()); err != nil {
			t.Fatalf("confirm %v: %v", confirm, err)
		}
		want, locks := "would reclaim (dry run; --confirm deletes) 0B: 0 blobs", 0
		if confirm {
			want, locks = "reclaimed 0B: 0 blobs", 1
		}
		if !strings.HasPrefix(out.String(), want) || lock.held != locks {
			t.Errorf("confirm %v: printed %q and took the lock %d times; want %q and %d", confirm, out, lock.held, want, locks)
		}
	}
}

// adm prune talks to up's API server when nothing else names a cluster, and to the
// named one when something does.
func TestPruneDefaultsToUpsAdministrator(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBECONFIG", "")
	dataDir, other := t.TempDir(), filepath.Join(t.TempDir(), "other.kubeconfig")
	write := func(path, server string) {
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server}
		cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
		cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
		cfg.CurrentContext = "c"
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dataDir, "admin.kubeconfig"), "https://127.0.0.1:6443")
	write(other, "https://other.example:6443")
	host := func() string {
		f := upAdminFactory(cmdutil.NewFactory(genericclioptions.NewConfigFlags(true)), dataDir)
		cfg, err := f.ToRESTConfig()
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Host
	}
	if got := host(); got != "https://127.0.0.1:6443" {
		t.Errorf("with no kubeconfig anywhere: %s, want up's", got)
	}
	t.Setenv("KUBECONFIG", other)
	if got := host(); got != "https://other.example:6443" {
		t.Errorf("with $KUBECONFIG set: %s, want the one it names", got)
	}
}
