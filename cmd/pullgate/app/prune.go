package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/controller/leader"
	"pullgate.dev/pullgate/internal/platform/datadir"
	"pullgate.dev/pullgate/internal/registry"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/keys"
)

// PruneOptions is `pullgate adm prune`.
type PruneOptions struct {
	genericiooptions.IOStreams
	Confirm          bool
	KeepYoungerThan  time.Duration
	UploadsOlderThan time.Duration
	DataDir          string
	StorageDriver    string
	StorageParams    []string

	Storage configuration.Storage
	Streams registry.Streams
	Lock    registry.PruneLock
}

func newPruneCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &PruneOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "prune [--confirm]",
		Short: "Reclaim the registry's storage: blobs, manifests and uploads nothing reaches",
		Long: `Reclaim the integrated registry's storage, exactly while it serves and takes pushes
(on any number of replicas): everything that no tag, ImageStream history or live
manifest reaches and that is older than --keep-younger-than, uploads nobody has
written to for longer than --uploads-older-than, and the repositories of deleted
ImageStreams and namespaces. No acknowledged push is ever lost, at any
--keep-younger-than (0s included). One prune runs at a time (Lease
pullgate-system/pullgate-registry-prune): this one waits for another's to end.
Without --confirm it only says what it would reclaim.`,
		Example: `  # What would go, on pullgate up's storage
  pullgate adm prune
  # Reclaim it
  pullgate adm prune --confirm
  # On S3
  pullgate adm prune --storage s3 --storage-param bucket=images --storage-param region=eu-west-1 --confirm`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			if !slices.ContainsFunc([]string{"kubeconfig", "server", "context", "cluster", "user", "token"}, cmd.Flags().Changed) {
				f = upAdminFactory(f, o.DataDir)
			}
			cmdutil.CheckErr(o.Complete(f))
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().BoolVar(&o.Confirm, "confirm", false, "delete; without it, only report")
	cmd.Flags().DurationVar(&o.KeepYoungerThan, "keep-younger-than", time.Hour, "keep everything stored more recently than this")
	cmd.Flags().DurationVar(&o.UploadsOlderThan, "uploads-older-than", registry.UploadSessionIdle,
		"delete uploads nobody has written to for longer than this (the registry refuses to resume an upload idle for 15m, so the default takes only what nobody can resume)")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", datadir.Default(), "pullgate up's data directory, whose registry storage to prune (filesystem)")
	cmd.Flags().StringVar(&o.StorageDriver, "storage", "filesystem", "the registry's storage driver: filesystem, s3")
	cmd.Flags().StringArrayVar(&o.StorageParams, "storage-param", nil, "storage driver parameter key=value (repeatable), as given to registry serve")
	return cmd
}

// Complete builds the storage configuration, the ImageStream client and the lock.
func (o *PruneOptions) Complete(f cmdutil.Factory) error {
	var err error
	if o.Storage, err = storageConfig(o.StorageDriver, o.StorageParams, o.DataDir); err != nil {
		return err
	}
	restConfig, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	o.Streams = imageapi.Streams{Client: dyn}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	o.Lock = leader.Lock{Client: client, Namespace: keys.Namespace, Name: leader.PruneLease}
	return nil
}

// storageConfig is distribution's storage configuration from the flags: driver, its
// key=value parameters, and for the filesystem up's storage in dataDir by default.
func storageConfig(driver string, keyValues []string, dataDir string) (configuration.Storage, error) {
	params := configuration.Parameters{}
	for _, kv := range keyValues {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--storage-param %q: want key=value", kv)
		}
		params[k] = v
	}
	if _, ok := params["rootdirectory"]; !ok && driver == "filesystem" {
		params["rootdirectory"] = filepath.Join(dataDir, "registry", "storage")
	}
	return configuration.Storage{driver: params}, nil
}

// Run prunes and reports.
func (o *PruneOptions) Run(ctx context.Context) error {
	// client-go's leader election narrates taking the Lease; the report says what matters.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	rep, err := registry.PruneStorage(ctx, o.Storage, o.Streams, o.Lock, registry.PruneOptions{
		Confirm: o.Confirm, KeepYoungerThan: o.KeepYoungerThan, UploadsOlderThan: o.UploadsOlderThan, Wait: true,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	fmt.Fprintln(o.Out, rep)
	return nil
}

// upAdminFactory is f, or — when nothing names a cluster (no kubeconfig flag, no
// $KUBECONFIG, no ~/.kube/config) and dataDir holds pullgate up's administrator
// kubeconfig — a factory for that kubeconfig: `pullgate adm prune` on up's storage
// then talks to up, not to localhost:8080.
func upAdminFactory(f cmdutil.Factory, dataDir string) cmdutil.Factory {
	admin := filepath.Join(dataDir, "admin.kubeconfig")
	if _, err := os.Stat(admin); err != nil {
		return f
	}
	for _, p := range clientcmd.NewDefaultClientConfigLoadingRules().GetLoadingPrecedence() {
		if _, err := os.Stat(p); err == nil {
			return f
		}
	}
	kube := genericclioptions.NewConfigFlags(true)
	kube.KubeConfig = &admin
	return cmdutil.NewFactory(kube)
}
