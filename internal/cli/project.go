package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/project"
)

// NewNewProjectCommand is `pullgate new-project NAME`: a namespace, its requester as
// its admin (as OpenShift's project template does), and the current context switched
// to it. pullgate's controllers give it the rest: builder and deployer, the registry
// role bindings and every account's pull secret.
func NewNewProjectCommand(f cmdutil.Factory, kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var skipConfigWrite bool
	cmd := &cobra.Command{
		Use:   "new-project NAME",
		Short: "Create a new project (a namespace with its service accounts, role bindings and pull secrets)",
		Run: func(cmd *cobra.Command, args []string) {
			if len(args) != 1 {
				cmdutil.CheckErr(cmdutil.UsageErrorf(cmd, "must have exactly one argument: the project name"))
			}
			cmdutil.CheckErr(newProject(cmd.Context(), f, kube, streams, args[0], skipConfigWrite))
		},
	}
	cmd.Flags().BoolVar(&skipConfigWrite, "skip-config-write", false, "do not switch the current context to the new project")
	return cmd
}

func newProject(ctx context.Context, f cmdutil.Factory, kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, name string, skipConfigWrite bool) error {
	if err := project.ValidateName(name); err != nil {
		return err
	}
	client, err := f.KubernetesClientSet()
	if err != nil {
		return err
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("project %q already exists", name)
		}
		return err
	}
	user, err := whoAmI(ctx, client)
	if err != nil {
		return err
	}
	_, err = client.RbacV1().RoleBindings(name).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
		Subjects:   []rbacv1.Subject{subjectFor(user.Username, false)},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	restConfig, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	if !skipConfigWrite {
		if err := switchNamespace(kube, name); err != nil {
			return err
		}
	}
	fmt.Fprintf(streams.Out, "Now using project %q on server %q.\n", name, restConfig.Host)
	return nil
}

// switchNamespace makes ns the namespace of the current context, as oc project does.
func switchNamespace(kube *genericclioptions.ConfigFlags, ns string) error {
	loader := kube.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return err
	}
	current := raw.CurrentContext
	if kube.Context != nil && *kube.Context != "" {
		current = *kube.Context
	}
	c, ok := raw.Contexts[current]
	if !ok {
		return nil
	}
	c.Namespace = ns
	return clientcmd.ModifyConfig(loader.ConfigAccess(), raw, true)
}

// NewWhoAmICommand is `pullgate whoami`: the user the API server sees.
func NewWhoAmICommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Print the user the API server authenticates you as",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			client, err := f.KubernetesClientSet()
			cmdutil.CheckErr(err)
			user, err := whoAmI(cmd.Context(), client)
			cmdutil.CheckErr(err)
			fmt.Fprintln(streams.Out, user.Username)
		},
	}
}

func whoAmI(ctx context.Context, client kubernetes.Interface) (authenticationv1.UserInfo, error) {
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, fmt.Errorf("asking the API server who you are: %w", err)
	}
	return review.Status.UserInfo, nil
}
