package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/datadir"
	"pullgate.dev/pullgate/internal/imageapi"
	"pullgate.dev/pullgate/internal/registry"
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
}

func newPruneCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &PruneOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "prune [--confirm]",
		Short: "Reclaim the registry's storage: blobs, manifests and uploads nothing reaches",
		Long: `Reclaim the integrated registry's storage, safely while it serves and takes pushes:
everything that no tag, ImageStream history or live manifest reaches and that is
older than --keep-younger-than, uploads abandoned for longer than
--uploads-older-than, and the repositories of deleted ImageStreams and namespaces.
A push in flight is never broken. Without --confirm it only says what it would
reclaim.`,
		Example: `  # What would go, on pullgate up's storage
  pullgate adm prune
  # Reclaim it
  pullgate adm prune --confirm
  # On S3
  pullgate adm prune --storage s3 --storage-param bucket=images --storage-param region=eu-west-1 --confirm`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			cmdutil.CheckErr(o.Complete(f))
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().BoolVar(&o.Confirm, "confirm", false, "delete; without it, only report")
	cmd.Flags().DurationVar(&o.KeepYoungerThan, "keep-younger-than", time.Hour, "keep everything stored more recently than this")
	cmd.Flags().DurationVar(&o.UploadsOlderThan, "uploads-older-than", 24*time.Hour, "delete uploads abandoned for longer than this")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", datadir.Default(), "pullgate up's data directory, whose registry storage to prune (filesystem)")
	cmd.Flags().StringVar(&o.StorageDriver, "storage", "filesystem", "the registry's storage driver: filesystem, s3")
	cmd.Flags().StringArrayVar(&o.StorageParams, "storage-param", nil, "storage driver parameter key=value (repeatable), as given to registry serve")
	return cmd
}

// Complete builds the storage configuration and the ImageStream client.
func (o *PruneOptions) Complete(f cmdutil.Factory) error {
	params := configuration.Parameters{}
	for _, kv := range o.StorageParams {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--storage-param %q: want key=value", kv)
		}
		params[k] = v
	}
	if _, ok := params["rootdirectory"]; !ok && o.StorageDriver == "filesystem" {
		params["rootdirectory"] = filepath.Join(o.DataDir, "registry", "storage")
	}
	o.Storage = configuration.Storage{o.StorageDriver: params}
	restConfig, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	o.Streams = imageapi.Streams{Client: dyn}
	return nil
}

// Run prunes and reports.
func (o *PruneOptions) Run(ctx context.Context) error {
	rep, err := registry.PruneStorage(ctx, o.Storage, o.Streams, registry.PruneOptions{
		Confirm: o.Confirm, KeepYoungerThan: o.KeepYoungerThan, UploadsOlderThan: o.UploadsOlderThan,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	fmt.Fprintln(o.Out, rep)
	return nil
}
