package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

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
	o.Resource = gr
	var err error
	if o.Namespace, _, err = f.ToRawKubeConfigLoader().Namespace(); err != nil {
		return err
	}
	o.Client, err = f.KubernetesClientSet()
	return err
}

func (o *WhoCanOptions) Run(ctx context.Context) error {
	rbac := o.Client.RbacV1()
	crbs, err := rbac.ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	rbs, err := rbac.RoleBindings(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	clusterRoles, err := rbac.ClusterRoles().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	roles, err := rbac.Roles(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	b := rbacauthz.Bindings{RulesOf: func(ref rbacv1.RoleRef, _ string) []rbacv1.PolicyRule {
		if ref.Kind == "Role" {
			if i := slices.IndexFunc(roles.Items, func(r rbacv1.Role) bool { return r.Name == ref.Name }); i >= 0 {
				return roles.Items[i].Rules
			}
			return nil
		}
		if i := slices.IndexFunc(clusterRoles.Items, func(r rbacv1.ClusterRole) bool { return r.Name == ref.Name }); i >= 0 {
			return clusterRoles.Items[i].Rules
		}
		return nil
	}}
	for i := range crbs.Items {
		b.ClusterRoleBindings = append(b.ClusterRoleBindings, &crbs.Items[i])
	}
	for i := range rbs.Items {
		b.RoleBindings = append(b.RoleBindings, &rbs.Items[i])
	}
	req := rbacauthz.Request{Verb: o.Verb, Namespace: o.Namespace, Group: o.Resource.Group, Resource: o.Resource.Resource, Subresource: o.Subresource}
	var users, groups []string
	for _, g := range rbacauthz.WhoCan(req, b) {
		if g.Subject.Kind == rbacv1.GroupKind {
			groups = append(groups, g.Subject.Name)
		} else {
			users = append(users, g.UserName())
		}
	}
	resource := o.Resource.String()
	if o.Subresource != "" {
		resource += "/" + o.Subresource
	}
	fmt.Fprintf(o.Out, "Namespace: %s\nVerb:      %s\nResource:  %s\n\n", o.Namespace, o.Verb, resource)
	printList(o.Out, "Users:  ", users)
	printList(o.Out, "Groups: ", groups)
	return nil
}

func printList(w interface{ Write([]byte) (int, error) }, label string, items []string) {
	slices.Sort(items)
	items = slices.Compact(items)
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
