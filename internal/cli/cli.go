// Package cli is pullgate's oc-compatible command line: the commands of the seed
// ("Using image pull secrets") with oc's names, flags, semantics and messages —
// policy add-role-to-user/-group, secrets link, create secret docker-registry and
// generic — and the few more a user of the integrated registry needs. Every command
// works against any kubeconfig, with kubectl's flag conventions (k8s.io/cli-runtime),
// and reuses kubectl's own commands where oc's behaviour equals kubectl's.
package cli

import (
	"context"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// Command makes one command with the shared kubeconfig flags' factory: how the
// binary adds a command of its own (adm prune, which runs the registry's storage
// code and so is not the CLI's) to the CLI's.
type Command func(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command

// Commands returns the oc-compatible commands, sharing one set of kubeconfig flags
// (--kubeconfig, --context, -n/--namespace, …), to be added to the root command;
// adm holds the CLI's administrative commands and admExtra's.
func Commands(streams genericiooptions.IOStreams, admExtra ...Command) []*cobra.Command {
	kube := genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().WithDiscoveryBurst(300).WithDiscoveryQPS(50)
	f := cmdutil.NewFactory(cmdutil.NewMatchVersionFlags(kube))
	cmds := []*cobra.Command{
		NewPolicyCommand(f, streams),
		NewCreateCommand(f, streams),
		NewSecretsCommand(f, streams),
		NewNewProjectCommand(f, kube, streams),
		NewWhoAmICommand(f, streams),
		NewTagCommand(f, streams),
		NewImportImageCommand(f, streams),
		NewAdmCommand(f, streams, admExtra...),
		NewExplainCommand(f, streams),
	}
	for _, c := range cmds {
		kube.AddFlags(c.PersistentFlags())
	}
	return cmds
}

// RegistryCommands are the client commands of `pullgate registry` (login, info).
func RegistryCommands(streams genericiooptions.IOStreams) []*cobra.Command {
	kube := genericclioptions.NewConfigFlags(true)
	f := cmdutil.NewFactory(cmdutil.NewMatchVersionFlags(kube))
	cmds := []*cobra.Command{NewRegistryLoginCommand(f, streams), NewRegistryInfoCommand(f, streams)}
	for _, c := range cmds {
		kube.AddFlags(c.Flags())
	}
	return cmds
}

// runWithClient is the Run of a command whose options need only the user's
// clientset: it fills in *client, then runs.
func runWithClient(f cmdutil.Factory, client *kubernetes.Interface, run func(context.Context) error) func(*cobra.Command, []string) {
	return func(cmd *cobra.Command, _ []string) {
		var err error
		*client, err = f.KubernetesClientSet()
		cmdutil.CheckErr(err)
		cmdutil.CheckErr(run(cmd.Context()))
	}
}
