package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/utils/ptr"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
	"pullgate.dev/pullgate/internal/registry/location"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/pkg/credentials"
)

// RegistryInfoOptions is `pullgate registry info`.
type RegistryInfoOptions struct {
	genericiooptions.IOStreams
	Client kubernetes.Interface
}

// NewRegistryInfoCommand is `pullgate registry info`.
func NewRegistryInfoCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &RegistryInfoOptions{IOStreams: streams}
	return &cobra.Command{
		Use:   "info",
		Short: "Print the integrated registry's URL and the names it answers to",
		Args:  cobra.NoArgs,
		Run:   runWithClient(f, &o.Client, o.Run),
	}
}

// Run prints what the registry published about itself.
func (o *RegistryInfoOptions) Run(ctx context.Context) error {
	info, err := location.Read(ctx, o.Client)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "URL:       %s\nHostnames: %s\n", info.URL, strings.Join(info.Hostnames, ", "))
	return nil
}

// RegistryLoginOptions is `pullgate registry login`.
type RegistryLoginOptions struct {
	genericiooptions.IOStreams
	ServiceAccount string
	To             string

	Namespace string
	Client    kubernetes.Interface
	// KubeconfigToken is the kubeconfig's own token, used without -z.
	KubeconfigToken string
	// DockerConfigDir is where Docker's config.json is, without --to.
	DockerConfigDir string
}

// NewRegistryLoginCommand is `pullgate registry login`.
func NewRegistryLoginCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &RegistryLoginOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "login [-z SERVICEACCOUNT] [--to FILE]",
		Short: "Log in to the integrated registry: write its credentials into Docker's config.json, or Podman's auth.json",
		Long: `Write a credential for every name of the integrated registry into your Docker
config.json ($DOCKER_CONFIG/config.json or ~/.docker/config.json), or with --to into
that file (auth.json form), keeping every other entry. The credential is your
kubeconfig's token, or with -z a token of that service account of the current
namespace (for the registry's audience, valid 1 hour).`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			cmdutil.CheckErr(o.Complete(f))
			cmdutil.CheckErr(o.Run(cmd.Context()))
		},
	}
	cmd.Flags().StringVarP(&o.ServiceAccount, "serviceaccount", "z", "", "log in as this service account of the current namespace")
	cmd.Flags().StringVar(&o.To, "to", "", "credentials file to write (auth.json form) instead of Docker's config.json")
	return cmd
}

// Complete reads the kubeconfig: the client, the namespace, its own token, and where
// Docker keeps its config.
func (o *RegistryLoginOptions) Complete(f cmdutil.Factory) error {
	var err error
	if o.Client, err = f.KubernetesClientSet(); err != nil {
		return err
	}
	if o.Namespace, _, err = f.ToRawKubeConfigLoader().Namespace(); err != nil {
		return err
	}
	if o.ServiceAccount == "" {
		cfg, err := f.ToRESTConfig()
		if err != nil {
			return err
		}
		o.KubeconfigToken = cfg.BearerToken
		if o.KubeconfigToken == "" && cfg.BearerTokenFile != "" {
			data, err := os.ReadFile(cfg.BearerTokenFile)
			if err != nil {
				return err
			}
			o.KubeconfigToken = strings.TrimSpace(string(data))
		}
	}
	if o.To == "" {
		o.DockerConfigDir = os.Getenv("DOCKER_CONFIG")
		if o.DockerConfigDir == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return err
			}
			o.DockerConfigDir = filepath.Join(home, ".docker")
		}
	}
	return nil
}

// Run writes a credential for every name of the registry.
func (o *RegistryLoginOptions) Run(ctx context.Context) error {
	info, err := location.Read(ctx, o.Client)
	if err != nil {
		return err
	}
	token, who, err := o.token(ctx)
	if err != nil {
		return err
	}
	path, flavor := o.To, credentials.Podman
	if path == "" {
		path, flavor = filepath.Join(o.DockerConfigDir, "config.json"), credentials.Docker
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, host := range info.Hostnames {
		if data, err = credentials.SetAuth(data, host, credentials.Credential{Username: "serviceaccount", Password: token}, flavor); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Replace(path, data, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Saved credentials of %s for %s into %s\n", who, strings.Join(info.Hostnames, ", "), path)
	return nil
}

// token is a new token of the service account, or the kubeconfig's own.
func (o *RegistryLoginOptions) token(ctx context.Context) (string, string, error) {
	if o.ServiceAccount == "" {
		user, err := whoAmI(ctx, o.Client)
		if err != nil {
			return "", "", err
		}
		if o.KubeconfigToken == "" {
			return "", "", fmt.Errorf("%s signs in with a client certificate, which the registry cannot check: log in as a service account with -z NAME", user.Username)
		}
		return o.KubeconfigToken, user.Username, nil
	}
	tr, err := o.Client.CoreV1().ServiceAccounts(o.Namespace).CreateToken(ctx, o.ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{tokenauth.Service}, ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) {
		return "", "", fmt.Errorf("serviceaccount %q not found in namespace %q", o.ServiceAccount, o.Namespace)
	}
	if err != nil {
		return "", "", err
	}
	return tr.Status.Token, serviceaccount.MakeUsername(o.Namespace, o.ServiceAccount), nil
}
