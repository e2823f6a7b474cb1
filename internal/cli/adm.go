package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/clusterpullsecret"
	"pullgate.dev/pullgate/internal/datadir"
	"pullgate.dev/pullgate/internal/kubeconfig"
	"pullgate.dev/pullgate/internal/pki"
)

// NewAdmCommand is `pullgate adm`.
func NewAdmCommand(f cmdutil.Factory, kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "adm", Short: "Administrative commands"}
	cmd.AddCommand(newCreateKubeconfigCommand(f, streams), newSetPullSecretCommand(f, streams), newPruneCommand(f, streams),
		newRotateRegistryKeyCommand(f, streams))
	return cmd
}

func newCreateKubeconfigCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	var user, output, dataDir string
	var groups []string
	cmd := &cobra.Command{
		Use:   "create-kubeconfig --user NAME [--group GROUP]... [--output FILE]",
		Short: "Make a kubeconfig for a user, with a client certificate from pullgate up's CA",
		Long: `Make a kubeconfig for a user (and groups) of pullgate up, with a client certificate
signed by the CA in its data directory, so that RBAC can be shown with real users.`,
		Example: `  pullgate adm create-kubeconfig --user alice --output alice.kubeconfig
  kubectl --kubeconfig alice.kubeconfig auth whoami`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			if user == "" {
				cmdutil.CheckErr(cmdutil.UsageErrorf(cmd, "--user is required"))
			}
			restConfig, err := f.ToRESTConfig()
			cmdutil.CheckErr(err)
			ca, err := pki.Open(filepath.Join(dataDir, "pki"))
			cmdutil.CheckErr(err)
			sum := sha256.Sum256([]byte(user + "\x00" + strings.Join(groups, "\x00")))
			name := "user-" + fileSafe.ReplaceAllString(user, "_") + "-" + hex.EncodeToString(sum[:4])
			kp, err := ca.ClientCert(name, user, groups...)
			cmdutil.CheckErr(err)
			path := output
			if path == "" {
				dir, err := os.MkdirTemp("", "kubeconfig-")
				cmdutil.CheckErr(err)
				defer os.RemoveAll(dir)
				path = filepath.Join(dir, "kubeconfig")
			}
			cmdutil.CheckErr(kubeconfig.WriteClientCert(path, "pullgate", restConfig.Host, filepath.Join(ca.Path, pki.CAFile), kp))
			if output == "" {
				data, err := os.ReadFile(path)
				cmdutil.CheckErr(err)
				_, _ = streams.Out.Write(data)
				return
			}
			fmt.Fprintf(streams.Out, "kubeconfig for user %q written to %s\n", user, output)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user name (the certificate's common name)")
	cmd.Flags().StringSliceVar(&groups, "group", nil, "group of the user (repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write (default: standard output)")
	cmd.Flags().StringVar(&dataDir, "data-dir", datadir.Default(), "pullgate up's data directory, which holds the CA")
	return cmd
}

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

func newSetPullSecretCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "set-pull-secret FILE",
		Short: "Replace the cluster pull secret with a docker config.json (pullgate-system/pull-secret)",
		Run: func(cmd *cobra.Command, args []string) {
			if len(args) != 1 {
				cmdutil.CheckErr(cmdutil.UsageErrorf(cmd, "give the docker config.json file"))
			}
			client, err := f.KubernetesClientSet()
			cmdutil.CheckErr(err)
			cmdutil.CheckErr(clusterpullsecret.Set(cmd.Context(), client, args[0]))
			fmt.Fprintf(streams.Out, "secret/%s updated in namespace %s\n", clusterpullsecret.Name, clusterpullsecret.Namespace)
		},
	}
}
