package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// NewPolicyCommand is `pullgate policy`, oc's policy commands.
func NewPolicyCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage authorization policy (as oc policy)",
	}
	cmd.AddCommand(
		newRoleCommand(f, streams, "add-role-to-user ROLE (USER | -z SERVICEACCOUNT) [USER ...]", "Add a role to users or service accounts for the current project", true, false),
		newRoleCommand(f, streams, "add-role-to-group ROLE GROUP [GROUP ...]", "Add a role to groups for the current project", true, true),
		newRoleCommand(f, streams, "remove-role-from-user ROLE (USER | -z SERVICEACCOUNT) [USER ...]", "Remove a role from users or service accounts for the current project", false, false),
		newRoleCommand(f, streams, "remove-role-from-group ROLE GROUP [GROUP ...]", "Remove a role from groups for the current project", false, true),
		newWhoCanCommand(f, streams),
	)
	return cmd
}

// RoleOptions is one add-role-to-* or remove-role-from-* run.
type RoleOptions struct {
	genericiooptions.IOStreams
	Add, Groups     bool
	RoleName        string
	RoleNamespace   string
	RoleBindingName string
	Names           []string
	ServiceAccounts []string
	DryRun          bool

	Namespace string
	Client    kubernetes.Interface
	Subjects  []rbacv1.Subject
}

func newRoleCommand(f cmdutil.Factory, streams genericiooptions.IOStreams, use, short string, add, groups bool) *cobra.Command {
	o := &RoleOptions{IOStreams: streams, Add: add, Groups: groups}
	cmd := &cobra.Command{
		Use:                   use,
		Short:                 short,
		DisableFlagsInUseLine: true,
		Run: func(cmd *cobra.Command, args []string) {
			cmdutil.CheckErr(o.Complete(f, cmd, args))
			cmdutil.CheckErr(o.Validate())
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().StringVar(&o.RoleNamespace, "role-namespace", "", "namespace of a Role (default: the role is a ClusterRole)")
	cmd.Flags().StringVar(&o.RoleBindingName, "rolebinding-name", "", "name of the role binding to modify or create")
	if !groups {
		cmd.Flags().StringSliceVarP(&o.ServiceAccounts, "serviceaccount", "z", nil, "service account in the current namespace to use as a user")
	}
	cmdutil.AddDryRunFlag(cmd)
	return cmd
}

// Complete reads the arguments and the namespace, and builds the subjects.
func (o *RoleOptions) Complete(f cmdutil.Factory, cmd *cobra.Command, args []string) error {
	if len(args) < 1 {
		return cmdutil.UsageErrorf(cmd, "you must specify a role")
	}
	o.RoleName, o.Names = args[0], args[1:]
	if len(o.Names) == 0 && len(o.ServiceAccounts) == 0 {
		what := "at least one user or service account"
		if o.Groups {
			what = "at least one group"
		}
		return cmdutil.UsageErrorf(cmd, "you must specify %s", what)
	}
	dryRun, err := cmdutil.GetDryRunStrategy(cmd)
	if err != nil {
		return err
	}
	o.DryRun = dryRun != cmdutil.DryRunNone
	if o.Namespace, _, err = f.ToRawKubeConfigLoader().Namespace(); err != nil {
		return err
	}
	if o.Client, err = f.KubernetesClientSet(); err != nil {
		return err
	}
	for _, name := range o.Names {
		o.Subjects = append(o.Subjects, subjectFor(name, o.Groups))
	}
	for _, sa := range o.ServiceAccounts {
		o.Subjects = append(o.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: o.Namespace})
	}
	return nil
}

// NewRoleChange is one add-role-to-user/-group (add) or remove-role-from-user/-group
// of a cluster role in namespace, for one name, as the CLI runs it; its messages go
// to streams.
func NewRoleChange(client kubernetes.Interface, streams genericiooptions.IOStreams, namespace, role, name string, group, add bool) *RoleOptions {
	return &RoleOptions{IOStreams: streams, Add: add, Groups: group, RoleName: role, Names: []string{name},
		Namespace: namespace, Client: client, Subjects: []rbacv1.Subject{subjectFor(name, group)}}
}

// subjectFor is oc's reading of a name: system:serviceaccount:NS:NAME is a service
// account, anything else a user (or a group).
func subjectFor(name string, group bool) rbacv1.Subject {
	if group {
		return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
	}
	if rest, ok := strings.CutPrefix(name, "system:serviceaccount:"); ok {
		if ns, sa, ok := strings.Cut(rest, ":"); ok && ns != "" && sa != "" && !strings.Contains(sa, ":") {
			return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}
		}
	}
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

// Validate checks what can be checked without the API.
func (o *RoleOptions) Validate() error {
	if o.RoleNamespace != "" && o.RoleNamespace != o.Namespace {
		return fmt.Errorf("--role-namespace %s: a role binding in namespace %s can only name a Role of its own namespace", o.RoleNamespace, o.Namespace)
	}
	return nil
}

func (o *RoleOptions) roleRef() rbacv1.RoleRef {
	if o.RoleNamespace != "" {
		return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: o.RoleName}
	}
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: o.RoleName}
}

// roleString is how oc names the role in its messages.
func (o *RoleOptions) roleString() string {
	if o.RoleNamespace != "" {
		return "role.rbac.authorization.k8s.io/" + o.RoleName
	}
	return "clusterrole.rbac.authorization.k8s.io/" + o.RoleName
}

// Run adds or removes the subjects.
func (o *RoleOptions) Run(ctx context.Context) error {
	if _, err := o.Client.CoreV1().Namespaces().Get(ctx, o.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %q not found", o.Namespace)
	}
	if o.Add {
		return o.add(ctx)
	}
	return o.remove(ctx)
}

func (o *RoleOptions) add(ctx context.Context) error {
	o.warnMissing(ctx)
	bindings := o.Client.RbacV1().RoleBindings(o.Namespace)
	all, err := bindings.List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var binding *rbacv1.RoleBinding
	if o.RoleBindingName != "" {
		for i := range all.Items {
			if all.Items[i].Name == o.RoleBindingName {
				binding = &all.Items[i]
			}
		}
		if binding != nil && binding.RoleRef != o.roleRef() {
			return fmt.Errorf("rolebinding %s found for role %s, not %s", o.RoleBindingName, binding.RoleRef.Name, o.RoleName)
		}
	} else {
		// oc reuses a binding of the role that already holds every subject; it never
		// appends to another one.
		for i := range all.Items {
			b := &all.Items[i]
			if b.RoleRef == o.roleRef() && holdsAll(b.Subjects, o.Subjects) {
				binding = b
				break
			}
		}
	}
	if binding == nil {
		name := o.RoleBindingName
		if name == "" {
			name = uniqueName(o.RoleName, all.Items)
		}
		binding = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace}, RoleRef: o.roleRef(), Subjects: slices.Clone(o.Subjects)}
		if !o.DryRun {
			if _, err := bindings.Create(ctx, binding, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
	} else if !holdsAll(binding.Subjects, o.Subjects) {
		for _, s := range o.Subjects {
			if !slices.ContainsFunc(binding.Subjects, func(x rbacv1.Subject) bool { return sameSubject(x, s) }) {
				binding.Subjects = append(binding.Subjects, s)
			}
		}
		if !o.DryRun {
			if _, err := bindings.Update(ctx, binding, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(o.Out, "%s added: %s%s\n", o.roleString(), o.subjectList(), o.dryRunSuffix())
	return nil
}

func (o *RoleOptions) remove(ctx context.Context) error {
	bindings := o.Client.RbacV1().RoleBindings(o.Namespace)
	all, err := bindings.List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	found := false
	for i := range all.Items {
		b := &all.Items[i]
		if b.RoleRef != o.roleRef() || (o.RoleBindingName != "" && b.Name != o.RoleBindingName) {
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(b.Subjects), func(x rbacv1.Subject) bool {
			return slices.ContainsFunc(o.Subjects, func(s rbacv1.Subject) bool { return sameSubject(x, s) })
		})
		if len(kept) == len(b.Subjects) {
			continue
		}
		found = true
		if o.DryRun {
			continue
		}
		if len(kept) == 0 {
			// oc deletes a binding left with no subject.
			err = bindings.Delete(ctx, b.Name, metav1.DeleteOptions{})
		} else {
			b.Subjects = kept
			_, err = bindings.Update(ctx, b, metav1.UpdateOptions{})
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if !found {
		return fmt.Errorf("unable to find target %s", o.subjectList())
	}
	fmt.Fprintf(o.Out, "%s removed: %s%s\n", o.roleString(), o.subjectList(), o.dryRunSuffix())
	return nil
}

// warnMissing says so when the role or a service account does not exist, as oc does;
// the binding is made anyway.
func (o *RoleOptions) warnMissing(ctx context.Context) {
	var err error
	if o.RoleNamespace != "" {
		_, err = o.Client.RbacV1().Roles(o.RoleNamespace).Get(ctx, o.RoleName, metav1.GetOptions{})
	} else {
		_, err = o.Client.RbacV1().ClusterRoles().Get(ctx, o.RoleName, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		kind := "clusterrole"
		if o.RoleNamespace != "" {
			kind = "role"
		}
		fmt.Fprintf(o.ErrOut, "Warning: %s %q not found\n", kind, o.RoleName)
	}
	for _, s := range o.Subjects {
		if s.Kind != rbacv1.ServiceAccountKind {
			continue
		}
		if _, err := o.Client.CoreV1().ServiceAccounts(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			fmt.Fprintf(o.ErrOut, "Warning: ServiceAccount %q not found in namespace %q\n", s.Name, s.Namespace)
		}
	}
}

func (o *RoleOptions) subjectList() string {
	names := slices.Clone(o.Names)
	names = append(names, o.ServiceAccounts...)
	if len(names) == 1 {
		return fmt.Sprintf("%q", names[0])
	}
	return fmt.Sprintf("%q", names)
}

func (o *RoleOptions) dryRunSuffix() string {
	if o.DryRun {
		return " (dry run)"
	}
	return ""
}

func holdsAll(have, want []rbacv1.Subject) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h rbacv1.Subject) bool { return sameSubject(h, w) }) {
			return false
		}
	}
	return true
}

func sameSubject(a, b rbacv1.Subject) bool {
	return a.Kind == b.Kind && a.Name == b.Name && a.Namespace == b.Namespace
}

// uniqueName is oc's: the role's name, then name-0, name-1, … while taken.
func uniqueName(base string, existing []rbacv1.RoleBinding) string {
	taken := func(n string) bool {
		return slices.ContainsFunc(existing, func(b rbacv1.RoleBinding) bool { return b.Name == n })
	}
	name := base
	for i := 0; taken(name); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}
