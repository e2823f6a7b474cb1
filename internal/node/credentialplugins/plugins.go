// Package credentialplugins runs the kubelet's image credential provider plugins with
// the kubelet's own code (k8s.io/kubernetes pkg/credentialprovider/plugin): the same
// CredentialProviderConfig file and bin directory, the same matching, caching and
// service-account tokens (KEP-4412, requested through the kubelet's token manager), so
// a pullgate node's pull takes the path a real kubelet's does. pullgate's own plugin
// (`pullgate-credential-provider`) and third-party ones (ECR, GCR, ACR) both work.
package credentialplugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"

	"github.com/google/go-containerregistry/pkg/authn"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"
	"k8s.io/kubernetes/pkg/kubelet/token"

	"pullgate.dev/pullgate/internal/node/credprovider"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Plugins are the plugins of one kubelet configuration.
type Plugins struct {
	client kubernetes.Interface
	tokens *token.Manager

	mu       sync.Mutex
	problems map[string]error // "pod/<uid>" or "sa/<ns>/<name>" → why no token
}

// The kubelet's plugin registry is process-wide: a second configuration would be
// refused by it (a panic), so it is refused here first.
var registered sync.Mutex
var registeredOnce bool

// nodeGraphBackoff retries, for about 3 s, a read the Node authorizer refuses because
// its graph does not have the pod yet (it lags the pod's binding by a moment); the
// kubelet would retry at its next pull instead.
var nodeGraphBackoff = wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 7}

// Register reads the kubelet's CredentialProviderConfig (configFile) and registers
// the plugins it names from binDir, as the kubelet does at start with
// --image-credential-provider-config and --image-credential-provider-bin-dir. The
// client should be the node's: the Node authorizer then lets it read the service
// accounts, and request the tokens, of the pods bound to it only. Once per process.
func Register(configFile, binDir string, client kubernetes.Interface) (*Plugins, error) {
	registered.Lock()
	defer registered.Unlock()
	if registeredOnce {
		return nil, errors.New("credential provider plugins are registered once per process")
	}
	p := &Plugins{client: client, tokens: token.NewManager(client), problems: map[string]error{}}
	if err := plugin.RegisterCredentialProviderPlugins(configFile, binDir, p.serviceAccountToken, p.serviceAccount); err != nil {
		return nil, fmt.Errorf("--image-credential-provider-config %s: %w", configFile, err)
	}
	registeredOnce = true
	return p, nil
}

// serviceAccountToken is the kubelet's: its token manager, which caches a token until
// 80% of its life is spent.
func (p *Plugins) serviceAccountToken(namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	var got *authenticationv1.TokenRequest
	err := retry.OnError(nodeGraphBackoff, apierrors.IsForbidden, func() (err error) {
		got, err = p.tokens.GetServiceAccountToken(namespace, name, tr)
		return err
	})
	if err != nil && tr.Spec.BoundObjectRef != nil {
		p.remember("pod/"+string(tr.Spec.BoundObjectRef.UID),
			fmt.Errorf("no token of service account %s/%s for audience %s: %v", namespace, name, strings.Join(tr.Spec.Audiences, ","), err))
	}
	return got, err
}

func (p *Plugins) serviceAccount(namespace, name string) (*corev1.ServiceAccount, error) {
	var sa *corev1.ServiceAccount
	err := retry.OnError(nodeGraphBackoff, apierrors.IsForbidden, func() (err error) {
		sa, err = p.client.CoreV1().ServiceAccounts(namespace).Get(context.Background(), name, metav1.GetOptions{})
		return err
	})
	if err != nil {
		p.remember("sa/"+namespace+"/"+name, fmt.Errorf("service account %s/%s could not be read for the credential provider plugins: %v", namespace, name, err))
	}
	return sa, err
}

func (p *Plugins) remember(key string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.problems[key] = err
}

func (p *Plugins) take(keys ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, k := range keys {
		if err, ok := p.problems[k]; ok {
			errs = append(errs, err)
			delete(p.problems, k)
		}
	}
	return errors.Join(errs...)
}

// Forget drops the tokens requested for a pod that is gone, as the kubelet does.
func (p *Plugins) Forget(podUID types.UID) { p.tokens.DeleteServiceAccountToken(podUID) }

// ForPod is the kubelet's plugin keyring for one pod: its service account's token is
// what service-account plugins are given.
func (p *Plugins) ForPod(pod *corev1.Pod) credentials.Provider {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return podPlugins{plugins: p, pod: pod, serviceAccount: sa,
		keyring: plugin.NewExternalCredentialProviderDockerKeyring(pod.Namespace, pod.Name, string(pod.UID), sa)}
}

type podPlugins struct {
	plugins        *Plugins
	pod            *corev1.Pod
	serviceAccount string
	keyring        credentialprovider.DockerKeyring
}

// Candidates implements credentials.Provider: what the plugins answered, in the
// kubelet's order; why a service-account plugin got no token, as problems.
func (p podPlugins) Candidates(_ context.Context, image string) (credentials.Candidates, error) {
	found, _ := p.keyring.Lookup(image)
	var out credentials.Candidates
	for _, f := range found {
		out.List = append(out.List, p.candidate(f))
	}
	out.Problems = p.plugins.take("pod/"+string(p.pod.UID), "sa/"+p.pod.Namespace+"/"+p.serviceAccount)
	return out, nil
}

// ForHost implements credentials.Provider: the kubelet asks plugins for images only.
func (podPlugins) ForHost(context.Context, string) credentials.Candidates {
	return credentials.Candidates{}
}

func (p podPlugins) candidate(f credentialprovider.TrackedAuthConfig) credentials.Candidate {
	c := credentials.Candidate{
		AuthConfig: authn.AuthConfig{
			Username: f.Username, Password: f.Password, Auth: f.Auth,
			IdentityToken: f.IdentityToken, RegistryToken: f.RegistryToken,
		},
		ID:          credentials.NodeProviderID,
		Description: "the node's credential provider plugin",
	}
	if f.Source != nil && f.Source.ServiceAccount != nil {
		sa := f.Source.ServiceAccount
		c.ID = credentials.ServiceAccountID(sa.Namespace, sa.Name, sa.UID)
		c.Description = fmt.Sprintf("credential provider plugin, with a token of service account %s/%s", sa.Namespace, sa.Name)
		if f.Username == credprovider.Username {
			// pullgate's plugin: the token itself, so the registry sees the account.
			c.Identity = serviceaccount.MakeUsername(sa.Namespace, sa.Name)
		}
	}
	return c
}
