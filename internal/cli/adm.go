package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/node/clusterpullsecret"
	"pullgate.dev/pullgate/internal/platform/datadir"
	"pullgate.dev/pullgate/internal/platform/kubeconfig"
	"pullgate.dev/pullgate/internal/platform/pki"
)

// NewAdmCommand is `pullgate adm`.
func NewAdmCommand(f cmdutil.Factory, streams genericiooptions.IOStreams, extra ...Command) *cobra.Command {
	cmd := &cobra.Command{Use: "adm", Short: "Administrative commands", Run: cmdutil.DefaultSubCommandRun(streams.ErrOut)}
	cmd.AddCommand(newCreateKubeconfigCommand(f, streams), newSetPullSecretCommand(f, streams), newRotateRegistryKeyCommand(f, streams), newAdmPolicyCommand(f, streams))
	for _, c := range extra {
		cmd.AddCommand(c(f, streams))
	}
	return cmd
}

// CreateKubeconfigOptions is `adm create-kubeconfig`: a kubeconfig for a user (and
// groups) with a client certificate from up's CA.
type CreateKubeconfigOptions struct {
	genericiooptions.IOStreams
	User    string
	Groups  []string
	Output  string
	DataDir string
	// Server is the API server's URL the kubeconfig points at.
	Server string
}

func newCreateKubeconfigCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &CreateKubeconfigOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "create-kubeconfig --user NAME [--group GROUP]... [--output FILE]",
		Short: "Make a kubeconfig for a user, with a client certificate from pullgate up's CA",
		Long: `Make a kubeconfig for a user (and groups) of pullgate up, with a client certificate
signed by the CA in its data directory, so that RBAC can be shown with real users.`,
		Example: `  pullgate adm create-kubeconfig --user alice --output alice.kubeconfig
  kubectl --kubeconfig alice.kubeconfig auth whoami`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			if o.User == "" {
				cmdutil.CheckErr(cmdutil.UsageErrorf(cmd, "--user is required"))
			}
			restConfig, err := f.ToRESTConfig()
			cmdutil.CheckErr(err)
			o.Server = restConfig.Host
			cmdutil.CheckErr(o.Run())
		},
	}
	cmd.Flags().StringVar(&o.User, "user", "", "user name (the certificate's common name)")
	cmd.Flags().StringSliceVar(&o.Groups, "group", nil, "group of the user (repeatable)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "file to write (default: standard output)")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", datadir.Default(), "pullgate up's data directory, which holds the CA")
	return cmd
}

// Run writes the kubeconfig to Output, or prints it.
func (o *CreateKubeconfigOptions) Run() error {
	ca, err := pki.Open(filepath.Join(o.DataDir, "pki"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(o.User + "\x00" + strings.Join(o.Groups, "\x00")))
	name := "user-" + fileSafe.ReplaceAllString(o.User, "_") + "-" + hex.EncodeToString(sum[:4])
	kp, err := ca.ClientCert(name, o.User, o.Groups...)
	if err != nil {
		return err
	}
	path := o.Output
	if path == "" {
		dir, err := os.MkdirTemp("", "kubeconfig-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "kubeconfig")
	}
	if err := kubeconfig.WriteClientCert(path, "pullgate", o.Server, filepath.Join(ca.Path, pki.CAFile), kp); err != nil {
		return err
	}
	if o.Output == "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = o.Out.Write(data)
		return err
	}
	fmt.Fprintf(o.Out, "kubeconfig for user %q written to %s\n", o.User, o.Output)
	return nil
}

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// SetPullSecretOptions is `adm set-pull-secret FILE`.
type SetPullSecretOptions struct {
	genericiooptions.IOStreams
	File   string
	Client kubernetes.Interface
}

func newSetPullSecretCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &SetPullSecretOptions{IOStreams: streams}
	return &cobra.Command{
		Use:   "set-pull-secret FILE",
		Short: "Replace the cluster pull secret with a docker config.json (pullgate-system/pull-secret)",
		Run: func(cmd *cobra.Command, args []string) {
			if len(args) != 1 {
				cmdutil.CheckErr(cmdutil.UsageErrorf(cmd, "give the docker config.json file"))
			}
			o.File = args[0]
			var err error
			o.Client, err = f.KubernetesClientSet()
			cmdutil.CheckErr(err)
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
}

func (o *SetPullSecretOptions) Run(ctx context.Context) error {
	if err := clusterpullsecret.Set(ctx, o.Client, o.File); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "secret/%s updated in namespace %s\n", clusterpullsecret.Name, clusterpullsecret.Namespace)
	return nil
}
