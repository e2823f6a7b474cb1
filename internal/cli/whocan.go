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
	rulesOf := func(ref rbacv1.RoleRef) []rbacv1.PolicyRule {
		if ref.Kind == "Role" {
			for _, r := range roles.Items {
				if r.Name == ref.Name {
					return r.Rules
				}
			}
			return nil
		}
		for _, r := range clusterRoles.Items {
			if r.Name == ref.Name {
				return r.Rules
			}
		}
		return nil
	}
	var users, groups []string
	add := func(ref rbacv1.RoleRef, subjects []rbacv1.Subject, bindingNS string) {
		if !slices.ContainsFunc(rulesOf(ref), o.allows) {
			return
		}
		for _, s := range subjects {
			switch s.Kind {
			case rbacv1.UserKind:
				users = append(users, s.Name)
			case rbacv1.GroupKind:
				groups = append(groups, s.Name)
			case rbacv1.ServiceAccountKind:
				ns := s.Namespace
				if ns == "" {
					ns = bindingNS
				}
				users = append(users, "system:serviceaccount:"+ns+":"+s.Name)
			}
		}
	}
	for _, b := range crbs.Items {
		add(b.RoleRef, b.Subjects, "")
	}
	for _, b := range rbs.Items {
		add(b.RoleRef, b.Subjects, b.Namespace)
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

// allows is RBAC's rule match for the asked verb and resource.
func (o *WhoCanOptions) allows(r rbacv1.PolicyRule) bool {
	if len(r.ResourceNames) > 0 {
		return false
	}
	if !slices.Contains(r.Verbs, o.Verb) && !slices.Contains(r.Verbs, rbacv1.VerbAll) {
		return false
	}
	if !slices.Contains(r.APIGroups, o.Resource.Group) && !slices.Contains(r.APIGroups, rbacv1.APIGroupAll) {
		return false
	}
	want := o.Resource.Resource
	if o.Subresource != "" {
		want += "/" + o.Subresource
	}
	for _, res := range r.Resources {
		if res == want || res == rbacv1.ResourceAll || (o.Subresource != "" && res == "*/"+o.Subresource) {
			return true
		}
	}
	return false
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
