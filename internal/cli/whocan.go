package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/openshift/project"
	"pullgate.dev/pullgate/internal/rbacauthz"
)

// WhoCanOptions is `policy who-can VERB RESOURCE[/SUBRESOURCE]`: who RBAC lets do it
// in the current namespace.
type WhoCanOptions struct {
	genericiooptions.IOStreams
	Verb        string
	Resource    schema.GroupResource
	Subresource string
	Namespace   string
	Client      kubernetes.Interface
}

func newWhoCanCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &WhoCanOptions{IOStreams: streams}
	return &cobra.Command{
		Use:   "who-can VERB RESOURCE[/SUBRESOURCE]",
		Short: "List who can perform the specified action on a resource",
		Example: `  # Who may pull images from project-b
  pullgate policy who-can get imagestreams/layers -n project-b`,
		Run: func(cmd *cobra.Command, args []string) {
			cmdutil.CheckErr(o.Complete(f, cmd, args))
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
}

func (o *WhoCanOptions) Complete(f cmdutil.Factory, cmd *cobra.Command, args []string) error {
	if len(args) != 2 {
		return cmdutil.UsageErrorf(cmd, "you must specify two arguments: verb and resource")
	}
	o.Verb = args[0]
	resource, sub, _ := strings.Cut(args[1], "/")
	o.Subresource = sub
	gr := schema.ParseGroupResource(resource)
	if gr.Group == "" {
		if mapper, err := f.ToRESTMapper(); err == nil {
			if gvr, err := mapper.ResourceFor(gr.WithVersion("")); err == nil {
				gr = gvr.GroupResource()
			}
		}
	}
	gr.Group = project.DecidingGroup(gr.Group, gr.Resource)
	o.Resource = gr
	var err error
	if o.Namespace, _, err = f.ToRawKubeConfigLoader().Namespace(); err != nil {
		return err
	}
	o.Client, err = f.KubernetesClientSet()
	return err
}

// Run asks project.WhoCan, from the bindings and roles read once, and prints oc's
// answer.
func (o *WhoCanOptions) Run(ctx context.Context) error {
	rbac, err := project.ListedRBAC(ctx, o.Client, o.Namespace)
	if err != nil {
		return err
	}
	access := project.WhoCan(rbac, rbacauthz.Request{Verb: o.Verb, Namespace: o.Namespace, Group: o.Resource.Group, Resource: o.Resource.Resource, Subresource: o.Subresource})
	resource := o.Resource.String()
	if o.Subresource != "" {
		resource += "/" + o.Subresource
	}
	fmt.Fprintf(o.Out, "Namespace: %s\nVerb:      %s\nResource:  %s\n\n", o.Namespace, o.Verb, resource)
	printList(o.Out, "Users:  ", access.Users)
	printList(o.Out, "Groups: ", access.Groups)
	return nil
}

// printList prints items (sorted, once) under label, oc's way.
func printList(w io.Writer, label string, items []string) {
	if len(items) == 0 {
		fmt.Fprintf(w, "%s<none>\n", label)
		return
	}
	pad := strings.Repeat(" ", len(label))
	for i, it := range items {
		if i == 0 {
			fmt.Fprintf(w, "%s%s\n", label, it)
		} else {
			fmt.Fprintf(w, "%s%s\n", pad, it)
		}
	}
}
