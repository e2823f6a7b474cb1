package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/scheme"

	"pullgate.dev/pullgate/internal/openshift/project"
)

// NewPolicyCommand is `pullgate policy`, oc's policy commands.
func NewPolicyCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return policyCommand(f, streams, "Manage authorization policy (as oc policy)")
}

// newAdmPolicyCommand is `pullgate adm policy`: as `oc adm policy`, the same
// project commands (oc's are the same code) and the cluster-role ones, which change
// cluster role bindings with the same algorithm.
func newAdmPolicyCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := policyCommand(f, streams, "Manage authorization policy (as oc adm policy)")
	cmd.AddCommand(
		newRoleCommand(f, streams, "add-cluster-role-to-user ROLE (USER | -z SERVICEACCOUNT) [USER ...]", "Add a role to users for all projects in the cluster", roleCommand{add: true, cluster: true}),
		newRoleCommand(f, streams, "add-cluster-role-to-group ROLE GROUP [GROUP ...]", "Add a role to groups for all projects in the cluster", roleCommand{add: true, groups: true, cluster: true}),
		newRoleCommand(f, streams, "remove-cluster-role-from-user ROLE (USER | -z SERVICEACCOUNT) [USER ...]", "Remove a role from users for all projects in the cluster", roleCommand{cluster: true}),
		newRoleCommand(f, streams, "remove-cluster-role-from-group ROLE GROUP [GROUP ...]", "Remove a role from groups for all projects in the cluster", roleCommand{groups: true, cluster: true}),
	)
	return cmd
}

// roleCommand says which of the role commands one is.
type roleCommand struct{ add, groups, cluster bool }

// policyCommand groups oc's role-binding commands for the current project.
func policyCommand(f cmdutil.Factory, streams genericiooptions.IOStreams, short string) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: short, Run: cmdutil.DefaultSubCommandRun(streams.ErrOut)}
	cmd.AddCommand(
		newRoleCommand(f, streams, "add-role-to-user ROLE (USER | -z SERVICEACCOUNT) [USER ...]", "Add a role to users or service accounts for the current project", roleCommand{add: true}),
		newRoleCommand(f, streams, "add-role-to-group ROLE GROUP [GROUP ...]", "Add a role to groups for the current project", roleCommand{add: true, groups: true}),
		newRoleCommand(f, streams, "remove-role-from-user ROLE (USER | -z SERVICEACCOUNT) [USER ...]", "Remove a role from users or service accounts for the current project", roleCommand{}),
		newRoleCommand(f, streams, "remove-role-from-group ROLE GROUP [GROUP ...]", "Remove a role from groups for the current project", roleCommand{groups: true}),
		newWhoCanCommand(f, streams),
	)
	return cmd
}

// RoleOptions is one add-role-to-* or remove-role-from-* run: project.Grant or
// project.Revoke, printed with oc's messages (oc's
// pkg/cli/admin/policy/modify_roles.go is the reference; the oc differential test,
// test/ocdiff, holds pullgate to it).
type RoleOptions struct {
	genericiooptions.IOStreams
	PrintFlags  *genericclioptions.PrintFlags
	Add, Groups bool
	// Cluster changes cluster role bindings (the cluster-role commands).
	Cluster         bool
	RoleName        string
	RoleNamespace   string
	RoleBindingName string
	// Names are the users or groups as given; ServiceAccounts the -z names.
	Names           []string
	ServiceAccounts []string
	DryRun          cmdutil.DryRunStrategy

	Namespace string
	Client    kubernetes.Interface
}

func newRoleCommand(f cmdutil.Factory, streams genericiooptions.IOStreams, use, short string, kind roleCommand) *cobra.Command {
	add, groups := kind.add, kind.groups
	o := newRoleOptions(streams, add, groups)
	o.Cluster = kind.cluster
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
	if !kind.cluster {
		cmd.Flags().StringVar(&o.RoleNamespace, "role-namespace", "", "namespace where the role is located: empty means a role defined in cluster policy")
	}
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

// Complete reads the arguments, the namespace and the client, with oc's checks and
// messages.
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
	o.Client, err = f.KubernetesClientSet()
	return err
}

// Validate checks what can be checked without the API.
func (o *RoleOptions) Validate() error { return o.change().Validate() }

// change is the run as project reads it: names as oc reads them, then the -z names
// as accounts of the namespace.
func (o *RoleOptions) change() project.RoleChange {
	c := project.RoleChange{Namespace: o.Namespace, Cluster: o.Cluster, Role: o.RoleName, RoleNamespace: o.RoleNamespace,
		Binding: o.RoleBindingName, Subjects: project.Subjects(o.Names, o.Groups)}
	for _, sa := range o.ServiceAccounts {
		c.Subjects = append(c.Subjects, project.ServiceAccount(o.Namespace, sa))
	}
	switch o.DryRun {
	case cmdutil.DryRunClient:
		c.DryRun = project.ClientDryRun
	case cmdutil.DryRunServer:
		c.DryRun = project.ServerDryRun
	}
	return c
}

// Run adds or removes the subjects and prints what oc prints.
func (o *RoleOptions) Run(ctx context.Context) error {
	if o.Add {
		return o.add(ctx)
	}
	return o.remove(ctx)
}

func (o *RoleOptions) add(ctx context.Context) error {
	p, err := o.printer("added")
	if err != nil {
		return err
	}
	res, err := project.Grant(ctx, o.Client, o.change())
	o.warn(res.Warnings)
	if err != nil {
		return err
	}
	// oc prints the binding when it was there already and -o asks for it, or in a
	// client dry run; otherwise the role.
	if (res.Unchanged && o.outputSet()) || (!res.Unchanged && o.DryRun == cmdutil.DryRunClient) {
		return p.PrintObj(bindingObject(&res.Bindings[0], o.Cluster), o.Out)
	}
	return p.PrintObj(o.roleToPrint(), o.Out)
}

func (o *RoleOptions) remove(ctx context.Context) error {
	c := o.change()
	if o.outputSet() {
		c.DryRun = project.ClientDryRun // oc prints the bindings as they would be, and changes nothing
	}
	res, err := project.Revoke(ctx, o.Client, c)
	o.warn(res.Warnings)
	if errors.Is(err, project.ErrNotBound) {
		return fmt.Errorf("unable to find target %v", o.targets())
	}
	if err != nil {
		return err
	}
	p, err := o.printer("removed")
	if err != nil {
		return err
	}
	if o.outputSet() {
		list := &unstructured.UnstructuredList{Object: map[string]any{"kind": "List", "apiVersion": "v1", "metadata": map[string]any{}}}
		for i := range res.Bindings {
			// As oc lists them: the bindings as read, without their kind.
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&res.Bindings[i])
			if err != nil {
				return err
			}
			list.Items = append(list.Items, unstructured.Unstructured{Object: obj})
		}
		return p.PrintObj(list, o.Out)
	}
	return p.PrintObj(o.roleToPrint(), o.Out)
}

func (o *RoleOptions) warn(warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(o.ErrOut, "Warning: %s\n", w)
	}
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
	return &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: o.change().RoleKind()}, ObjectMeta: metav1.ObjectMeta{Name: o.RoleName}}
}

// bindingObject is binding (a cluster role binding when cluster) with its kind
// set, for printing.
func bindingObject(b *rbacv1.RoleBinding, cluster bool) runtime.Object {
	if cluster {
		meta := *b.ObjectMeta.DeepCopy()
		meta.Namespace = ""
		return &rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
			ObjectMeta: meta, Subjects: b.Subjects, RoleRef: b.RoleRef}
	}
	c := b.DeepCopy()
	c.TypeMeta = metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"}
	return c
}
