package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/utils/ptr"

	"pullgate.dev/pullgate/internal/atomicfile"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Where the registry publishes its names, for clients: ConfigMap kube-public/pullgate-registry.
const (
	RegistryInfoNamespace = "kube-public"
	RegistryInfoName      = "pullgate-registry"
	RegistryAudience      = "pullgate-registry"
)

// RegistryInfo is what the registry publishes about itself.
type RegistryInfo struct {
	Hostnames []string
	URL       string
}

func registryInfo(ctx context.Context, client kubernetes.Interface) (RegistryInfo, error) {
	cm, err := client.CoreV1().ConfigMaps(RegistryInfoNamespace).Get(ctx, RegistryInfoName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return RegistryInfo{}, fmt.Errorf("no integrated registry is published in this cluster (configmap %s/%s not found): run pullgate up, or pullgate registry serve against it", RegistryInfoNamespace, RegistryInfoName)
	}
	if err != nil {
		return RegistryInfo{}, err
	}
	return RegistryInfo{Hostnames: strings.Split(cm.Data["hostnames"], ","), URL: cm.Data["url"]}, nil
}

// NewRegistryInfoCommand is `pullgate registry info`.
func NewRegistryInfoCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Print the integrated registry's URL and the names it answers to",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			client, err := f.KubernetesClientSet()
			cmdutil.CheckErr(err)
			info, err := registryInfo(cmd.Context(), client)
			cmdutil.CheckErr(err)
			fmt.Fprintf(streams.Out, "URL:       %s\nHostnames: %s\n", info.URL, strings.Join(info.Hostnames, ", "))
		},
	}
}

// RegistryLoginOptions is `pullgate registry login`.
type RegistryLoginOptions struct {
	genericiooptions.IOStreams
	ServiceAccount string
	To             string
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
			cmdutil.CheckErr(o.Run(cmd.Context(), f))
		},
	}
	cmd.Flags().StringVarP(&o.ServiceAccount, "serviceaccount", "z", "", "log in as this service account of the current namespace")
	cmd.Flags().StringVar(&o.To, "to", "", "credentials file to write (auth.json form) instead of Docker's config.json")
	return cmd
}

func (o *RegistryLoginOptions) Run(ctx context.Context, f cmdutil.Factory) error {
	client, err := f.KubernetesClientSet()
	if err != nil {
		return err
	}
	info, err := registryInfo(ctx, client)
	if err != nil {
		return err
	}
	token, who, err := o.token(ctx, f, client)
	if err != nil {
		return err
	}
	path, flavor := o.To, credentials.Podman
	if path == "" {
		dir := os.Getenv("DOCKER_CONFIG")
		if dir == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return err
			}
			dir = filepath.Join(home, ".docker")
		}
		path, flavor = filepath.Join(dir, "config.json"), credentials.Docker
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

// token is the service account's new token, or the kubeconfig's own.
func (o *RegistryLoginOptions) token(ctx context.Context, f cmdutil.Factory, client kubernetes.Interface) (string, string, error) {
	if o.ServiceAccount != "" {
		ns, _, err := f.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return "", "", err
		}
		tr, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, o.ServiceAccount, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{RegistryAudience}, ExpirationSeconds: ptr.To(int64(3600))},
		}, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) {
			return "", "", fmt.Errorf("serviceaccount %q not found in namespace %q", o.ServiceAccount, ns)
		}
		if err != nil {
			return "", "", err
		}
		return tr.Status.Token, fmt.Sprintf("system:serviceaccount:%s:%s", ns, o.ServiceAccount), nil
	}
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return "", "", err
	}
	token := cfg.BearerToken
	if token == "" && cfg.BearerTokenFile != "" {
		data, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return "", "", err
		}
		token = strings.TrimSpace(string(data))
	}
	if token == "" {
		user, _ := whoAmI(ctx, client)
		return "", "", fmt.Errorf("%s signs in with a client certificate, which the registry cannot check: log in as a service account with -z NAME", user.Username)
	}
	user, err := whoAmI(ctx, client)
	return token, user.Username, err
}
