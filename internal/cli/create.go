package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/kubectl/pkg/cmd/create"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/pkg/credentials"
)

// NewCreateCommand is `pullgate create secret …`: kubectl's own commands (the Secret
// is the one kubectl and oc make), with credential files checked first.
func NewCreateCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Create a resource (secret)", Run: cmdutil.DefaultSubCommandRun(streams.ErrOut)}
	secret := create.NewCmdCreateSecret(f, streams)
	for _, sub := range secret.Commands() {
		if strings.HasPrefix(sub.Use, "generic") {
			checkCredentialFiles(sub)
		}
	}
	cmd.AddCommand(secret)
	return cmd
}

// checkCredentialFiles makes `create secret generic --type=kubernetes.io/dockerconfigjson`
// (or podmanconfigjson) parse each --from-file with the credentials package before
// anything is created: a broken file is refused with its name and the place of the
// error, and no Secret is made.
func checkCredentialFiles(cmd *cobra.Command) {
	run := cmd.Run
	cmd.Run = func(c *cobra.Command, args []string) {
		typ, _ := c.Flags().GetString("type")
		files, _ := c.Flags().GetStringSlice("from-file")
		cmdutil.CheckErr(validateCredentialFiles(corev1.SecretType(typ), files))
		run(c, args)
	}
}

func validateCredentialFiles(typ corev1.SecretType, sources []string) error {
	if typ != corev1.SecretTypeDockerConfigJson && typ != credentials.SecretTypePodmanConfigJSON {
		return nil
	}
	if len(sources) != 1 {
		return fmt.Errorf("--type=%s: give exactly one --from-file with the credentials file", typ)
	}
	key, path, ok := strings.Cut(sources[0], "=")
	if !ok {
		key, path = filepath.Base(sources[0]), sources[0]
	}
	if typ == corev1.SecretTypeDockerConfigJson && key != corev1.DockerConfigJsonKey {
		return fmt.Errorf("--from-file=%s: a %s secret keeps its file under the key %s: use --from-file=%s=%s", sources[0], typ, corev1.DockerConfigJsonKey, corev1.DockerConfigJsonKey, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--from-file=%s: %w", sources[0], err)
	}
	if err := credentials.ValidateCredentialFile(data, credentials.Source{Kind: "file", Name: path}); err != nil {
		return fmt.Errorf("--from-file=%s: %w", sources[0], err)
	}
	return nil
}
