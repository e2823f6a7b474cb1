package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	imagev1 "github.com/openshift/api/image/v1"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// ImportImageOptions is `pullgate import-image`, oc import-image in oc's words:
// read an image from another registry with the project's pull secrets and record
// it as a tag of a stream.
type ImportImageOptions struct {
	genericiooptions.IOStreams
	From            string
	Confirm         bool
	All             bool
	Scheduled       bool
	Insecure        bool
	ReferencePolicy string
	ImportMode      string

	Namespace, Stream, Tag string
	api                    imageAPI
	existing               *imagev1.ImageStream
}

// NewImportImageCommand is `pullgate import-image`.
func NewImportImageCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ImportImageOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "import-image IMAGESTREAM[:TAG] --from=IMAGE [--confirm]",
		Short: "Import an image from another registry into an image stream (oc import-image)",
		Example: `  # make stream imp and import quay.io/org/tool:1.2 as its tag 1.2
  pullgate import-image imp:1.2 --from=quay.io/org/tool:1.2 --confirm

  # import again every 15 minutes (pullgate up --image-import-interval)
  pullgate import-image imp:1.2 --from=quay.io/org/tool:1.2 --confirm --scheduled`,
		Args: cobra.ExactArgs(1),
		Run: func(cmd *cobra.Command, args []string) {
			cmdutil.CheckErr(o.Complete(cmd.Context(), f, args))
			cmdutil.CheckErr(o.Validate())
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().StringVar(&o.From, "from", "", "A Docker image repository to import images from.")
	cmd.Flags().BoolVar(&o.Confirm, "confirm", false, "If true, allow the image stream import location to be set or changed.")
	cmd.Flags().BoolVar(&o.All, "all", false, "If true, import all tags from the provided source on creation or if --from is specified.")
	cmd.Flags().BoolVar(&o.Scheduled, "scheduled", false, "Set each imported Docker image to be periodically imported from a remote repository.")
	cmd.Flags().BoolVar(&o.Insecure, "insecure", false, "If true, allow importing from registries that have invalid HTTPS certificates or are hosted via HTTP.")
	cmd.Flags().StringVar(&o.ReferencePolicy, "reference-policy", "", "Allow to request pullthrough for external image when set to 'local'. Defaults to 'source'.")
	cmd.Flags().StringVar(&o.ImportMode, "import-mode", "", "Imports the full manifest list of a tag when set to 'PreserveOriginal'. Defaults to 'Legacy'.")
	return cmd
}

// Complete reads the namespace, the stream and its existing spec.
func (o *ImportImageOptions) Complete(ctx context.Context, f cmdutil.Factory, args []string) error {
	ns, _, err := f.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return err
	}
	o.Namespace = ns
	o.Stream, o.Tag, _ = strings.Cut(args[0], ":")
	if o.Tag == "" && !o.All {
		o.Tag = "latest"
	}
	dyn, err := f.DynamicClient()
	if err != nil {
		return err
	}
	o.api = imageAPI{dyn}
	o.existing, err = o.api.stream(ctx, ns, o.Stream)
	if apierrors.IsNotFound(err) {
		o.existing, err = nil, nil
	}
	return err
}

// Validate says what is missing, in oc's words.
func (o *ImportImageOptions) Validate() error {
	if o.existing == nil && !o.Confirm {
		return fmt.Errorf("no image stream named %q exists, pass --confirm to create and import", o.Stream)
	}
	if o.From == "" {
		if o.existing == nil {
			return errors.New("--from is required to make a new image stream")
		}
		for _, t := range o.existing.Spec.Tags {
			if t.Name == o.Tag && t.From != nil && t.From.Kind == "DockerImage" {
				o.From = t.From.Name
			}
		}
		if o.From == "" {
			return fmt.Errorf("tag %q of image stream %q does not point to an image to import: give --from", o.Tag, o.Stream)
		}
	}
	if _, err := referencePolicy(o.ReferencePolicy); err != nil {
		return err
	}
	_, err := importMode(o.ImportMode)
	return err
}

// Run posts the ImageStreamImport and prints what came of each image.
func (o *ImportImageOptions) Run(ctx context.Context) error {
	policy, _ := referencePolicy(o.ReferencePolicy)
	mode, _ := importMode(o.ImportMode)
	importPolicy := imagev1.TagImportPolicy{Scheduled: o.Scheduled, Insecure: o.Insecure, ImportMode: mode}
	isi := imagev1.ImageStreamImport{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamImport", APIVersion: "image.openshift.io/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Stream, Namespace: o.Namespace}, Spec: imagev1.ImageStreamImportSpec{Import: true}}
	if o.All {
		isi.Spec.Repository = &imagev1.RepositoryImportSpec{From: corev1.ObjectReference{Kind: "DockerImage", Name: o.From}, ImportPolicy: importPolicy, ReferencePolicy: policy}
	} else {
		isi.Spec.Images = []imagev1.ImageImportSpec{{From: corev1.ObjectReference{Kind: "DockerImage", Name: o.From}, To: &corev1.LocalObjectReference{Name: o.Tag},
			ImportPolicy: importPolicy, ReferencePolicy: policy}}
	}
	var out imagev1.ImageStreamImport
	if err := o.api.create(ctx, "imagestreamimports", o.Namespace, &isi, &out); err != nil {
		return err
	}
	statuses := out.Status.Images
	if out.Status.Repository != nil {
		statuses = out.Status.Repository.Images
	}
	failed := false
	for _, st := range statuses {
		if st.Status.Status == metav1.StatusFailure {
			failed = true
			fmt.Fprintf(o.ErrOut, "error: tag %s failed: %s\n", st.Tag, st.Status.Message)
			continue
		}
		ref := ""
		if st.Image != nil {
			ref = st.Image.DockerImageReference
		}
		fmt.Fprintf(o.Out, "%s:%s imported from %s\n", o.Stream, st.Tag, ref)
	}
	if failed {
		return errors.New("imported completed with errors")
	}
	fmt.Fprintf(o.Out, "imagestream.image.openshift.io/%s imported\n", o.Stream)
	return nil
}
