package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/openshift/project"
)

// NewProjectOptions is `pullgate new-project NAME`, as `oc new-project`: a
// ProjectRequest (so a self-provisioner may make one, and reserved names are refused
// in one place), then the current context switched to the project.
type NewProjectOptions struct {
	genericiooptions.IOStreams
	Request         project.Request
	SkipConfigWrite bool

	Client dynamic.Interface
	Server string
	// SwitchTo makes the project the current context's namespace.
	SwitchTo func(namespace string) error
}

// NewNewProjectCommand is `pullgate new-project NAME [--display-name=…]
// [--description=…] [--skip-config-write]`. pullgate's controllers give the project
// the rest: builder and deployer, the registry role bindings and every account's
// pull secret.
func NewNewProjectCommand(f cmdutil.Factory, kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &NewProjectOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "new-project NAME [--display-name=DISPLAYNAME] [--description=DESCRIPTION]",
		Short: "Request a new project (a namespace with its service accounts, role bindings and pull secrets)",
		Run: func(cmd *cobra.Command, args []string) {
			cmdutil.CheckErr(o.Complete(f, kube, cmd, args))
			cmdutil.CheckErr(o.Validate())
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().StringVar(&o.Request.DisplayName, "display-name", "", "Project display name")
	cmd.Flags().StringVar(&o.Request.Description, "description", "", "Project description")
	cmd.Flags().BoolVar(&o.SkipConfigWrite, "skip-config-write", false, "If true, the project will not be set as a cluster entry in kubeconfig after being created")
	return cmd
}

func (o *NewProjectOptions) Complete(f cmdutil.Factory, kube *genericclioptions.ConfigFlags, cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return cmdutil.UsageErrorf(cmd, "must have exactly one argument: the project name")
	}
	o.Request.Name = args[0]
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	o.Server = cfg.Host
	if o.Client, err = f.DynamicClient(); err != nil {
		return err
	}
	o.SwitchTo = func(ns string) error { return switchNamespace(kube, ns) }
	return nil
}

// Validate refuses the names the cluster's components reserve before the request is
// sent (the API refuses them the same).
func (o *NewProjectOptions) Validate() error { return project.ValidateName(o.Request.Name) }

func (o *NewProjectOptions) Run(ctx context.Context) error {
	name, err := project.Submit(ctx, o.Client, o.Request)
	if err != nil {
		return err
	}
	if !o.SkipConfigWrite {
		if err := o.SwitchTo(name); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "Now using project %q on server %q.\n", name, o.Server)
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
