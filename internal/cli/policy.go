package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/scheme"
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

// RoleOptions is one add-role-to-* or remove-role-from-* run, with oc's behaviour
// and messages (oc's pkg/cli/admin/policy/modify_roles.go is the reference; the oc
// differential test, test/ocdiff, holds pullgate to it).
type RoleOptions struct {
	genericiooptions.IOStreams
	PrintFlags      *genericclioptions.PrintFlags
	Add, Groups     bool
	RoleName        string
	RoleNamespace   string
	RoleBindingName string
	// Names are the users or groups as given; ServiceAccounts the -z names.
	Names           []string
	ServiceAccounts []string
	DryRun          cmdutil.DryRunStrategy

	Namespace string
	Client    kubernetes.Interface
	Subjects  []rbacv1.Subject
}

func newRoleCommand(f cmdutil.Factory, streams genericiooptions.IOStreams, use, short string, add, groups bool) *cobra.Command {
	o := newRoleOptions(streams, add, groups)
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
	bindingHelp := "Name of the rolebinding to modify or create. If left empty creates a new rolebinding with a default name"
	if !add {
		bindingHelp = "Name of the rolebinding to modify. If left empty it will operate on all rolebindings"
	}
	cmd.Flags().StringVar(&o.RoleBindingName, "rolebinding-name", "", bindingHelp)
	cmd.Flags().StringVar(&o.RoleNamespace, "role-namespace", "", "namespace where the role is located: empty means a role defined in cluster policy")
	if !groups {
		cmd.Flags().StringSliceVarP(&o.ServiceAccounts, "serviceaccount", "z", nil, "service account in the current namespace to use as a user")
	}
	cmdutil.AddDryRunFlag(cmd)
	o.PrintFlags.AddFlags(cmd)
	return cmd
}

func newRoleOptions(streams genericiooptions.IOStreams, add, groups bool) *RoleOptions {
	op := "added"
	if !add {
		op = "removed"
	}
	return &RoleOptions{IOStreams: streams, Add: add, Groups: groups, PrintFlags: genericclioptions.NewPrintFlags(op).WithTypeSetter(scheme.Scheme)}
}

// NewRoleChange is one add-role-to-user/-group (add) or remove-role-from-user/-group
// of a cluster role in namespace, for one name, as the CLI runs it; its messages go
// to streams.
func NewRoleChange(client kubernetes.Interface, streams genericiooptions.IOStreams, namespace, role, name string, group, add bool) *RoleOptions {
	o := newRoleOptions(streams, add, group)
	o.RoleName, o.Names, o.Namespace, o.Client = role, []string{name}, namespace, client
	o.Subjects = subjectsFor(o.Names, group)
	return o
}

// Complete reads the arguments and the namespace, and builds the subjects, with
// oc's checks and messages.
func (o *RoleOptions) Complete(f cmdutil.Factory, cmd *cobra.Command, args []string) error {
	if o.Groups {
		if len(args) < 2 {
			return errors.New("you must specify at least two arguments: <role> <group> [group]...")
		}
	} else if len(args) < 1 {
		return errors.New("you must specify a role")
	}
	o.RoleName, o.Names = args[0], args[1:]
	if !o.Groups && len(o.Names) == 0 && len(o.ServiceAccounts) == 0 {
		return errors.New("you must specify at least one user or service account")
	}
	for _, sa := range o.ServiceAccounts {
		if strings.HasPrefix(sa, "system:serviceaccount") {
			return errors.New("--serviceaccount (-z) should only be used with short-form serviceaccount names (e.g. `default`)")
		}
		if causes := validation.ValidateServiceAccountName(sa, false); len(causes) > 0 {
			return fmt.Errorf("%q is not a valid serviceaccount name:\n  %s", sa, strings.Join(causes, "\n  "))
		}
	}
	var err error
	if o.DryRun, err = cmdutil.GetDryRunStrategy(cmd); err != nil {
		return err
	}
	if o.Namespace, _, err = f.ToRawKubeConfigLoader().Namespace(); err != nil {
		return err
	}
	if o.Client, err = f.KubernetesClientSet(); err != nil {
		return err
	}
	o.Subjects = subjectsFor(o.Names, o.Groups)
	for _, sa := range o.ServiceAccounts {
		o.Subjects = append(o.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: o.Namespace})
	}
	return nil
}

// subjectsFor is oc's reading of names: system:serviceaccount:NS:NAME (a valid one) is
// a service account, anything else a user — or, for the group commands, a group.
func subjectsFor(names []string, group bool) []rbacv1.Subject {
	var out []rbacv1.Subject
	for _, name := range names {
		out = append(out, subjectFor(name, group))
	}
	return out
}

func subjectFor(name string, group bool) rbacv1.Subject {
	if group {
		return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
	}
	if ns, sa, err := serviceaccount.SplitUsername(name); err == nil {
		return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}
	}
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

// Validate checks what can be checked without the API.
func (o *RoleOptions) Validate() error {
	if o.RoleNamespace != "" && o.RoleNamespace != o.Namespace {
		return fmt.Errorf("role binding in namespace %q can't reference role in different namespace %q", o.Namespace, o.RoleNamespace)
	}
	return nil
}

func (o *RoleOptions) roleKind() string {
	if o.RoleNamespace != "" {
		return "Role"
	}
	return "ClusterRole"
}

// targets are the names as given, then the -z names: oc's message lists them so.
func (o *RoleOptions) targets() []string {
	return append(slices.Clone(o.Names), o.ServiceAccounts...)
}

// printer prints what oc prints: "<kind>/<name> added: "u1"", with (dry run) or
// (server dry run), or the object with -o.
func (o *RoleOptions) printer(operation string) (printers.ResourcePrinter, error) {
	targets := o.targets()
	all := fmt.Sprintf("%q", targets)
	if len(targets) == 1 {
		all = fmt.Sprintf("%q", targets[0])
	}
	switch o.DryRun {
	case cmdutil.DryRunClient:
		all += " (dry run)"
	case cmdutil.DryRunServer:
		all += " (server dry run)"
	}
	o.PrintFlags.NamePrintFlags.Operation = operation + ": " + all
	return o.PrintFlags.ToPrinter()
}

func (o *RoleOptions) outputSet() bool {
	return o.PrintFlags.OutputFormat != nil && *o.PrintFlags.OutputFormat != ""
}

// roleToPrint is the object oc names in its message: the role, by kind and name.
func (o *RoleOptions) roleToPrint() runtime.Object {
	return &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: o.roleKind()}, ObjectMeta: metav1.ObjectMeta{Name: o.RoleName}}
}

func (o *RoleOptions) serverDryRun() []string {
	if o.DryRun == cmdutil.DryRunServer {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// Run adds or removes the subjects.
func (o *RoleOptions) Run(ctx context.Context) error {
	if o.Add {
		return o.add(ctx)
	}
	return o.remove(ctx)
}

// bindingsOfRole are the namespace's bindings of the role, in the API's order.
func (o *RoleOptions) bindingsOfRole(ctx context.Context) ([]rbacv1.RoleBinding, []rbacv1.RoleBinding, error) {
	list, err := o.Client.RbacV1().RoleBindings(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, nil, err
	}
	var of []rbacv1.RoleBinding
	if list == nil {
		return nil, nil, nil
	}
	for _, b := range list.Items {
		if b.RoleRef.Name == o.RoleName && b.RoleRef.Kind == o.roleKind() {
			of = append(of, b)
		}
	}
	return of, list.Items, nil
}

func (o *RoleOptions) add(ctx context.Context) error {
	p, err := o.printer("added")
	if err != nil {
		return err
	}
	bindings := o.Client.RbacV1().RoleBindings(o.Namespace)
	var binding *rbacv1.RoleBinding
	update := false
	if o.RoleBindingName != "" {
		existing, err := bindings.Get(ctx, o.RoleBindingName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return err
		case existing.RoleRef.Name != o.RoleName:
			return fmt.Errorf("rolebinding %s found for role %s, not %s", o.RoleBindingName, existing.RoleRef.Name, o.RoleName)
		case existing.RoleRef.Kind != o.roleKind():
			return fmt.Errorf("rolebinding %s found for %q, not %q", o.RoleBindingName, existing.RoleRef.Kind, o.roleKind())
		default:
			binding, update = existing, true
		}
	} else {
		of, _, err := o.bindingsOfRole(ctx)
		if err != nil {
			return err
		}
		// A binding of the role that holds every subject already: nothing to do.
		for i := range of {
			if len(addSubjects(of[i].Subjects, o.Subjects)) == len(of[i].Subjects) {
				if o.outputSet() {
					return p.PrintObj(bindingObject(&of[i]), o.Out)
				}
				return p.PrintObj(o.roleToPrint(), o.Out)
			}
		}
	}
	if binding == nil {
		name := o.RoleBindingName
		if name == "" {
			_, all, err := o.bindingsOfRole(ctx)
			if err != nil {
				return err
			}
			if name, err = uniqueName(o.RoleName, all); err != nil {
				return err
			}
		}
		binding = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: o.roleKind(), Name: o.RoleName}}
	}
	o.warnMissing(ctx, binding)
	binding.Subjects = addSubjects(binding.Subjects, o.Subjects)
	if o.DryRun == cmdutil.DryRunClient {
		return p.PrintObj(bindingObject(binding), o.Out)
	}
	if update {
		_, err = bindings.Update(ctx, binding, metav1.UpdateOptions{DryRun: o.serverDryRun()})
	} else {
		_, err = bindings.Create(ctx, binding, metav1.CreateOptions{DryRun: o.serverDryRun()})
		if apierrors.IsAlreadyExists(err) {
			return o.add(ctx) // made meanwhile: run again, as oc does
		}
	}
	if err != nil {
		return err
	}
	return p.PrintObj(o.roleToPrint(), o.Out)
}

// bindingObject is binding with its kind set, for printing.
func bindingObject(b *rbacv1.RoleBinding) *rbacv1.RoleBinding {
	c := b.DeepCopy()
	c.TypeMeta = metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"}
	return c
}

// warnMissing says, as oc does, when the role or a service account being added does
// not exist; the binding is made anyway. (oc checks users and groups only where
// OpenShift's user API exists; there is none here.)
func (o *RoleOptions) warnMissing(ctx context.Context, binding *rbacv1.RoleBinding) {
	var err error
	if o.roleKind() == "Role" {
		_, err = o.Client.RbacV1().Roles(o.Namespace).Get(ctx, o.RoleName, metav1.GetOptions{})
	} else {
		_, err = o.Client.RbacV1().ClusterRoles().Get(ctx, o.RoleName, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		fmt.Fprintf(o.ErrOut, "Warning: role '%s' not found\n", o.RoleName)
	}
	for _, s := range addSubjects(binding.Subjects, o.Subjects)[len(binding.Subjects):] {
		if s.Kind != rbacv1.ServiceAccountKind {
			continue
		}
		if _, err := o.Client.CoreV1().ServiceAccounts(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			fmt.Fprintf(o.ErrOut, "Warning: %s '%s' not found\n", s.Kind, s.Name)
		}
	}
}

func (o *RoleOptions) remove(ctx context.Context) error {
	bindings := o.Client.RbacV1().RoleBindings(o.Namespace)
	var of []rbacv1.RoleBinding
	if o.RoleBindingName != "" {
		existing, err := bindings.Get(ctx, o.RoleBindingName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if existing.RoleRef.Name != o.RoleName {
			return fmt.Errorf("rolebinding %s contains role %s, instead of role %s", o.RoleBindingName, existing.RoleRef.Name, o.RoleName)
		}
		if existing.RoleRef.Kind != o.roleKind() {
			return fmt.Errorf("rolebinding %s contains role %s of kind %q, not %q", o.RoleBindingName, o.RoleName, existing.RoleRef.Kind, o.roleKind())
		}
		of = []rbacv1.RoleBinding{*existing}
	} else {
		var err error
		if of, _, err = o.bindingsOfRole(ctx); err != nil {
			return err
		}
		if len(of) == 0 {
			return fmt.Errorf("unable to locate any RoleBinding for %s %q", o.roleKind(), o.RoleName)
		}
	}
	var changed []*rbacv1.RoleBinding
	for i := range of {
		kept, removed := removeSubjects(of[i].Subjects, o.Subjects)
		of[i].Subjects = kept
		if removed > 0 {
			changed = append(changed, &of[i])
		}
	}
	if len(changed) == 0 {
		return fmt.Errorf("unable to find target %v", o.targets())
	}
	p, err := o.printer("removed")
	if err != nil {
		return err
	}
	if o.outputSet() {
		list := &unstructured.UnstructuredList{Object: map[string]any{"kind": "List", "apiVersion": "v1", "metadata": map[string]any{}}}
		for _, b := range changed {
			// As oc lists them: the bindings as read, without their kind.
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(b)
			if err != nil {
				return err
			}
			list.Items = append(list.Items, unstructured.Unstructured{Object: obj})
		}
		return p.PrintObj(list, o.Out)
	}
	if o.DryRun == cmdutil.DryRunClient {
		return p.PrintObj(o.roleToPrint(), o.Out)
	}
	for _, b := range changed {
		if len(b.Subjects) > 0 || b.Annotations[rbacv1.AutoUpdateAnnotationKey] == "false" {
			_, err = bindings.Update(ctx, b, metav1.UpdateOptions{DryRun: o.serverDryRun()})
		} else {
			// oc deletes a binding left with no subject.
			err = bindings.Delete(ctx, b.Name, metav1.DeleteOptions{DryRun: o.serverDryRun()})
		}
		if err != nil {
			return err
		}
		if b.Annotations[rbacv1.AutoUpdateAnnotationKey] == "true" {
			fmt.Fprintf(o.ErrOut, "Warning: Your changes may get lost whenever a master is restarted, unless you prevent reconciliation of this rolebinding using the following command: oc annotate rolebinding.rbac %s '%s=false' --overwrite\n", b.Name, rbacv1.AutoUpdateAnnotationKey)
		}
	}
	return p.PrintObj(o.roleToPrint(), o.Out)
}

// addSubjects is have with the subjects of want it lacks appended, in want's order.
func addSubjects(have, want []rbacv1.Subject) []rbacv1.Subject {
	out := slices.Clone(have)
	for _, w := range want {
		if !slices.ContainsFunc(out, func(h rbacv1.Subject) bool { return sameSubject(h, w) }) {
			out = append(out, w)
		}
	}
	return out
}

// removeSubjects is have without the subjects of gone, and how many went.
func removeSubjects(have, gone []rbacv1.Subject) ([]rbacv1.Subject, int) {
	out := []rbacv1.Subject{}
	removed := 0
	for _, h := range have {
		if slices.ContainsFunc(gone, func(g rbacv1.Subject) bool { return sameSubject(h, g) }) {
			removed++
			continue
		}
		out = append(out, h)
	}
	return out, removed
}

func sameSubject(a, b rbacv1.Subject) bool {
	return a.Kind == b.Kind && a.Name == b.Name && a.Namespace == b.Namespace
}

// uniqueName is oc's: the role's name, then name-0 … name-99 while taken.
func uniqueName(base string, existing []rbacv1.RoleBinding) (string, error) {
	taken := func(n string) bool {
		return slices.ContainsFunc(existing, func(b rbacv1.RoleBinding) bool { return b.Name == n })
	}
	if !taken(base) {
		return base, nil
	}
	for i := range 100 {
		if name := fmt.Sprintf("%s-%d", base, i); !taken(name) {
			return name, nil
		}
	}
	return "", fmt.Errorf("unable to find a unique name for a role binding of %s", base)
}
