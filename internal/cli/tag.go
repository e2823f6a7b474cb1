package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	imagev1 "github.com/openshift/api/image/v1"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// TagOptions is `pullgate tag`, oc tag in oc's words: point a stream's tag at
// another stream's image, an external image, or (with --alias) another tag.
type TagOptions struct {
	genericiooptions.IOStreams
	Source          string // docker, istag or isimage: what SOURCE names (guessed when empty)
	Alias           bool
	Delete          bool
	Scheduled       bool
	Insecure        bool
	ReferencePolicy string
	ImportMode      string

	Namespace string
	From      *corev1.ObjectReference
	// FromText is how SOURCE is said back, e.g. src/app@sha256:….
	FromText string
	Dests    []streamRef
	policy   imagev1.TagReferencePolicy
	mode     imagev1.ImportModeType
	api      imageAPI
	args     []string
}

// NewTagCommand is `pullgate tag`.
func NewTagCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &TagOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "tag [--source=SOURCETYPE] SOURCE DEST [DEST ...]",
		Short: "Tag existing images into image streams (oc tag)",
		Example: `  # copy src/app:v1's image into dst's stream app as prod (mounted in the registry, not copied)
  pullgate tag src/app:v1 dst/app:prod

  # an external image, imported with the project's pull secrets, again every 15 minutes
  pullgate tag --source=docker quay.io/org/tool:1.2 tool:1.2 --scheduled

  # delete a tag
  pullgate tag -d app:prod`,
		Run: func(cmd *cobra.Command, args []string) {
			cmdutil.CheckErr(o.Complete(cmd.Context(), f, args))
			cmdutil.CheckErr(o.Validate())
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().StringVar(&o.Source, "source", "", "Optional hint for the source type; valid values are 'docker', 'istag' and 'isimage'.")
	cmd.Flags().BoolVar(&o.Alias, "alias", false, "Should the destination tag be updated whenever the source tag changes. Applies only to a single image stream.")
	cmd.Flags().BoolVarP(&o.Delete, "delete", "d", false, "Delete the provided spec tags.")
	cmd.Flags().BoolVar(&o.Scheduled, "scheduled", false, "Set a Docker image to be periodically imported from a remote repository.")
	cmd.Flags().BoolVar(&o.Insecure, "insecure", false, "Set to true if importing the specified Docker image requires HTTP or has a self-signed certificate.")
	cmd.Flags().StringVar(&o.ReferencePolicy, "reference-policy", "source", "Allow to request pullthrough for external image when set to 'local'.")
	cmd.Flags().StringVar(&o.ImportMode, "import-mode", "", "Imports the full manifest list of a tag when set to 'PreserveOriginal'. Defaults to 'Legacy'.")
	return cmd
}

// Complete reads the namespace, the destinations and (unless deleting) the source,
// resolving a source tag to its image as oc does, so the tag does not follow it.
func (o *TagOptions) Complete(ctx context.Context, f cmdutil.Factory, args []string) error {
	o.args = args
	ns, _, err := f.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return err
	}
	o.Namespace = ns
	dyn, err := f.DynamicClient()
	if err != nil {
		return err
	}
	o.api = imageAPI{dyn}
	dests := args
	if !o.Delete {
		if len(args) < 2 {
			return errors.New("you must specify a source and at least one destination")
		}
		if err := o.completeSource(ctx, args[0]); err != nil {
			return err
		}
		dests = args[1:]
	}
	if len(dests) == 0 {
		return errors.New("you must specify at least one tag to delete")
	}
	for _, d := range dests {
		ref, err := parseStreamRef(d, ns)
		if err != nil {
			return err
		}
		o.Dests = append(o.Dests, ref)
	}
	if o.policy, err = referencePolicy(o.ReferencePolicy); err != nil {
		return err
	}
	o.mode, err = importMode(o.ImportMode)
	return err
}

func (o *TagOptions) completeSource(ctx context.Context, src string) error {
	kind := map[string]string{"docker": "DockerImage", "dockerimage": "DockerImage", "istag": "ImageStreamTag", "imagestreamtag": "ImageStreamTag", "isimage": "ImageStreamImage", "imagestreamimage": "ImageStreamImage"}[strings.ToLower(o.Source)]
	if o.Source != "" && kind == "" {
		return fmt.Errorf("--source %q: want docker, istag or isimage", o.Source)
	}
	if kind == "" && looksExternal(src) {
		kind = "DockerImage"
	}
	if kind == "DockerImage" {
		if _, err := name.ParseReference(src); err != nil {
			return fmt.Errorf("%q is not an image reference: %w", src, err)
		}
		o.From, o.FromText = &corev1.ObjectReference{Kind: "DockerImage", Name: src}, src
		return nil
	}
	ref, err := parseStreamRef(src, o.Namespace)
	if err != nil {
		return err
	}
	if ref.Digest == "" && ref.Tag == "" {
		ref.Tag = "latest"
	}
	// Said back and recorded as oc does: with the namespace only when SOURCE named
	// one (Run adds it for a destination in another project).
	named := strings.Contains(src, "/")
	said := func(r streamRef) string {
		if named {
			return r.String()
		}
		return strings.TrimPrefix(r.String(), r.Namespace+"/")
	}
	fromNS := ""
	if named {
		fromNS = ref.Namespace
	}
	if ref.Digest != "" || kind == "ImageStreamImage" {
		o.From, o.FromText = &corev1.ObjectReference{Kind: "ImageStreamImage", Namespace: fromNS, Name: ref.Stream + "@" + ref.Digest}, said(ref)
		return nil
	}
	if o.Alias {
		o.From, o.FromText = &corev1.ObjectReference{Kind: "ImageStreamTag", Namespace: fromNS, Name: ref.Stream + ":" + ref.Tag}, said(ref)
		return nil
	}
	is, err := o.api.stream(ctx, ref.Namespace, ref.Stream)
	if err != nil {
		return err
	}
	ev, ok := latestImage(is, ref.Tag)
	if !ok {
		return fmt.Errorf("%q is not currently pointing to an image, cannot use it as the source of a tag", src)
	}
	ref.Digest = ev.Image
	o.From, o.FromText = &corev1.ObjectReference{Kind: "ImageStreamImage", Namespace: fromNS, Name: ref.Stream + "@" + ev.Image}, said(ref)
	return nil
}

// looksExternal reports whether src names a registry (a host with a dot or a
// port, or localhost) rather than a stream.
func looksExternal(src string) bool {
	first, _, ok := strings.Cut(src, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// Validate checks the destinations.
func (o *TagOptions) Validate() error {
	for _, d := range o.Dests {
		if d.Tag == "" || d.Digest != "" {
			return fmt.Errorf("%q must be of the form [namespace/]stream:tag", d)
		}
	}
	if o.Alias {
		if o.From == nil || o.From.Kind != "ImageStreamTag" {
			return errors.New("--alias needs a source image stream tag")
		}
		// oc's check: the destination in the current project, of the source's stream
		// name (the source's project is not compared, as in oc).
		for _, d := range o.Dests {
			if d.Namespace != o.Namespace || !strings.HasPrefix(o.From.Name, d.Stream+":") {
				return errors.New("cannot set alias across different Image Streams")
			}
		}
	}
	return nil
}

// Run sets (or deletes) each destination tag through image.openshift.io.
func (o *TagOptions) Run(ctx context.Context) error {
	for _, d := range o.Dests {
		where := d.Stream + ":" + d.Tag
		if d.Namespace != o.Namespace {
			where = d.Namespace + "/" + where
		}
		if o.Delete {
			if err := o.api.client.Resource(imageResource("imagestreamtags")).Namespace(d.Namespace).Delete(ctx, d.Stream+":"+d.Tag, metav1.DeleteOptions{}); err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "Deleted tag %s/%s:%s.\n", d.Namespace, d.Stream, d.Tag)
			continue
		}
		from := *o.From
		if from.Kind != "DockerImage" && from.Namespace == "" && d.Namespace != o.Namespace {
			from.Namespace = o.Namespace
		}
		ist := imagev1.ImageStreamTag{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamTag", APIVersion: "image.openshift.io/v1"},
			ObjectMeta: metav1.ObjectMeta{Name: d.Stream + ":" + d.Tag, Namespace: d.Namespace},
			Tag: &imagev1.TagReference{Name: d.Tag, From: &from, ReferencePolicy: o.policy,
				ImportPolicy: imagev1.TagImportPolicy{Scheduled: o.Scheduled, Insecure: o.Insecure, ImportMode: o.mode}}}
		var out imagev1.ImageStreamTag
		if err := o.api.create(ctx, "imagestreamtags", d.Namespace, &ist, &out); err != nil {
			return err
		}
		switch {
		case o.Alias:
			fmt.Fprintf(o.Out, "Tag %s set up to track %s.\n", where, o.FromText)
		case o.Scheduled:
			fmt.Fprintf(o.Out, "Tag %s set to import %s periodically.\n", where, o.FromText)
		default:
			fmt.Fprintf(o.Out, "Tag %s set to %s.\n", where, o.FromText)
		}
	}
	return nil
}
