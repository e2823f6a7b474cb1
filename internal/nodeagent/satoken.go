package nodeagent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"pullgate.dev/pullgate/pkg/credentials"
)

// serviceAccountTokens is the credential provider of the integrated registry: for an
// image on one of its hosts, a token of the pod's service account, bound to the pod,
// for the registry's audience (what a kubelet credential provider with service
// account tokens, KEP-4412, gives).
type serviceAccountTokens struct {
	agent *Agent
	pod   *corev1.Pod
}

// Candidates implements credentials.Provider.
func (s serviceAccountTokens) Candidates(ctx context.Context, image string) (credentials.Candidates, error) {
	if !s.agent.integrated(image) {
		return credentials.Candidates{}, nil
	}
	c, err := s.agent.tokens.credential(ctx, s.pod)
	if err != nil {
		return credentials.Candidates{Problems: err}, nil
	}
	return credentials.Candidates{List: []credentials.Candidate{c}}, nil
}

// ForHost implements credentials.Provider: a token is only for an image.
func (serviceAccountTokens) ForHost(context.Context, string) credentials.Candidates {
	return credentials.Candidates{}
}

// tokenCache requests, and keeps while they are fresh, tokens of pods' service
// accounts bound to the pod, for the integrated registry's audience. The node may ask
// only for pods bound to it (NodeRestriction), and only for that audience if RBAC
// grants it request-serviceaccounts-token-audience.
type tokenCache struct {
	client   kubernetes.Interface
	audience string
	mu       sync.Mutex
	tokens   map[string]cachedToken // namespace/pod → token
}

type cachedToken struct {
	uid     string
	token   string
	refresh time.Time
}

const tokenLifetime = 10 * time.Minute

// nodeGraphBackoff retries a refused token request for about 3 s.
var nodeGraphBackoff = wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 7}

func (t *tokenCache) credential(ctx context.Context, pod *corev1.Pod) (credentials.Candidate, error) {
	sa := serviceAccountName(pod)
	c := credentials.Candidate{
		ID:          serviceAccountID(pod),
		Description: fmt.Sprintf("token of service account %s/%s, requested by the node", pod.Namespace, sa),
		Identity:    fmt.Sprintf("system:serviceaccount:%s:%s", pod.Namespace, sa),
	}
	key := pod.Namespace + "/" + pod.Name
	t.mu.Lock()
	cached, ok := t.tokens[key]
	t.mu.Unlock()
	if ok && cached.uid == string(pod.UID) && time.Now().Before(cached.refresh) {
		c.AuthConfig = authn.AuthConfig{Username: "serviceaccount", Password: cached.token}
		return c, nil
	}
	var tr *authenticationv1.TokenRequest
	// The API server's Node authorizer learns that the pod is bound to this node from
	// its own watch, which may lag the node agent's by a moment: a refusal then is
	// retried briefly, as the kubelet's token manager does.
	err := retry.OnError(nodeGraphBackoff, apierrors.IsForbidden, func() error {
		var err error
		tr, err = t.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{
				Audiences:         []string{t.audience},
				ExpirationSeconds: ptr.To(int64(tokenLifetime.Seconds())),
				BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
			},
		}, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return c, fmt.Errorf("no token for service account %s/%s (audience %s): %v", pod.Namespace, sa, t.audience, err)
	}
	t.mu.Lock()
	t.tokens[key] = cachedToken{uid: string(pod.UID), token: tr.Status.Token, refresh: time.Now().Add(tokenLifetime / 2)}
	t.mu.Unlock()
	c.AuthConfig = authn.AuthConfig{Username: "serviceaccount", Password: tr.Status.Token}
	return c, nil
}

func (t *tokenCache) forget(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.tokens, namespace+"/"+name)
}
