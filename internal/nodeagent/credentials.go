package nodeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
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

	"pullgate.dev/pullgate/internal/imagepull"
	"pullgate.dev/pullgate/pkg/credentials"
)

// podCredentials is the kubelet's keyring for one pod, built once per sync: the pod's
// image pull secrets, then the node's credentials. Problems with the secrets become
// events, and notes added to a failed pull's message.
//
// Each credential has an ID for the node's pull records (KEP-2535): where it comes
// from and a hash of what it holds, so that a secret rotated or replaced under the
// same name no longer counts as the one that pulled an image.
type podCredentials struct {
	agent *Agent
	pod   *corev1.Pod

	built    bool
	keyring  credentials.Keyring
	secrets  map[string]string // "namespace/name" → the secret's ID prefix
	held     []string          // the IDs of every credential the pod holds
	problems []string
}

// credentialID names a credential in pull records: its holder and a hash of its
// content (never the content).
func credentialID(holder string, c credentials.Credential) string {
	h := sha256.New()
	for _, part := range []string{c.Username, c.Password, c.IdentityToken, c.RegistryToken} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return holder + "#" + hex.EncodeToString(h.Sum(nil)[:12])
}

// nodeHolder is the holder of the node's own credentials in pull records.
const nodeHolder = "node"

// hold notes the credentials of configs as held by the pod, under holder.
func (p *podCredentials) hold(holder func(credentials.Source) string, configs []*credentials.Config) {
	for _, cfg := range configs {
		if cfg == nil {
			continue
		}
		for _, e := range cfg.Entries {
			p.held = append(p.held, credentialID(holder(e.Source), e.Credential))
		}
	}
}

func (p *podCredentials) build(ctx context.Context) {
	if p.built {
		return
	}
	p.built = true
	p.secrets = map[string]string{}
	var configs []*credentials.Config
	var missing []string
	for _, ref := range p.pod.Spec.ImagePullSecrets {
		if ref.Name == "" {
			continue
		}
		secret, err := p.agent.cfg.Client.CoreV1().Secrets(p.pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			missing = append(missing, ref.Name)
			if !apierrors.IsNotFound(err) {
				p.problems = append(p.problems, fmt.Sprintf("image pull secret %s/%s could not be read: %v", p.pod.Namespace, ref.Name, err))
			} else {
				p.problems = append(p.problems, fmt.Sprintf("image pull secret %s/%s does not exist", p.pod.Namespace, ref.Name))
			}
			continue
		}
		cfg, err := credentials.FromSecret(secret)
		if err != nil {
			// The error names the secret and the field, never the content.
			p.problems = append(p.problems, fmt.Sprintf("image pull secret not used: %v", err))
			p.agent.podEvent(p.pod, corev1.EventTypeWarning, "FailedToParseImagePullSecret", err.Error())
			continue
		}
		p.secrets[secret.Namespace+"/"+secret.Name] = fmt.Sprintf("secret:%s/%s/%s", secret.Namespace, secret.Name, secret.UID)
		configs = append(configs, cfg)
	}
	p.hold(p.holder, configs)
	if len(missing) > 0 {
		p.agent.podEvent(p.pod, corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret",
			fmt.Sprintf("Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", strings.Join(missing, ", ")))
	}
	for _, errs := range [][]error{p.keyring.AddLayer("pod secrets", configs...)} {
		for _, err := range errs {
			p.problems = append(p.problems, err.Error())
		}
	}
	if p.agent.cfg.NodeCredentials != nil {
		node, err := p.agent.cfg.NodeCredentials(ctx)
		if err != nil {
			p.problems = append(p.problems, "the node's credentials are not used: "+err.Error())
		}
		for _, err := range p.keyring.AddLayer("node", node...) {
			p.problems = append(p.problems, err.Error())
		}
		p.hold(p.holder, node)
	}
}

// holder is who holds the credentials of source: one of the pod's secrets, or the node.
func (p *podCredentials) holder(source credentials.Source) string {
	if id, ok := p.secrets[source.Name]; ok && source.Kind == "secret" {
		return id
	}
	return nodeHolder
}

// notes are the problems with the pod's secrets, for a failed pull's message.
func (p *podCredentials) notes() string { return strings.Join(p.problems, "; ") }

// ids are the credentials the pod holds, as pull records name them.
func (p *podCredentials) ids() []string {
	p.build(context.Background())
	out := slices.Clone(p.held)
	if len(p.agent.cfg.RegistryHosts) > 0 {
		out = append(out, serviceAccountID(p.pod))
	}
	slices.Sort(out)
	return out
}

func serviceAccountID(pod *corev1.Pod) string {
	return fmt.Sprintf("serviceaccount:%s/%s", pod.Namespace, serviceAccountName(pod))
}

func serviceAccountName(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}

// request lists the credentials for image in the kubelet's order, then, for the
// integrated registry, the pod's service account token.
func (p *podCredentials) request(ctx context.Context, image string) imagepull.Request {
	p.build(ctx)
	req := imagepull.Request{Image: image}
	matches, err := p.keyring.Lookup(image)
	if err == nil {
		req.Credentials = p.convert(ctx, matches)
	}
	req.RealmCredentials = func(host string) []imagepull.Credential {
		return p.convert(ctx, p.keyring.LookupHost(host))
	}
	if p.agent.integrated(image) {
		if c, err := p.agent.tokens.credential(ctx, p.pod); err == nil {
			req.Credentials = append(req.Credentials, c)
		} else {
			p.problems = append(p.problems, err.Error())
		}
	}
	return req
}

func (p *podCredentials) convert(ctx context.Context, matches []credentials.Match) []imagepull.Credential {
	var out []imagepull.Credential
	for _, m := range matches {
		c, err := m.Resolve(ctx, 0)
		if err != nil {
			p.problems = append(p.problems, err.Error())
			continue
		}
		out = append(out, imagepull.Credential{
			ID:          credentialID(p.holder(m.Source), m.Credential),
			Description: fmt.Sprintf("%s, %s", m.Source, c),
			Auth: authn.AuthConfig{Username: c.Username, Password: c.Password,
				IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken},
		})
	}
	return out
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

func (t *tokenCache) credential(ctx context.Context, pod *corev1.Pod) (imagepull.Credential, error) {
	sa := serviceAccountName(pod)
	c := imagepull.Credential{
		ID:          serviceAccountID(pod),
		Description: fmt.Sprintf("token of service account %s/%s, requested by the node", pod.Namespace, sa),
		Identity:    fmt.Sprintf("system:serviceaccount:%s:%s", pod.Namespace, sa),
	}
	key := pod.Namespace + "/" + pod.Name
	t.mu.Lock()
	cached, ok := t.tokens[key]
	t.mu.Unlock()
	if ok && cached.uid == string(pod.UID) && time.Now().Before(cached.refresh) {
		c.Auth = authn.AuthConfig{Username: "serviceaccount", Password: cached.token}
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
	c.Auth = authn.AuthConfig{Username: "serviceaccount", Password: tr.Status.Token}
	return c, nil
}

func (t *tokenCache) forget(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.tokens, namespace+"/"+name)
}
