package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/pkg/credentials"
)

// nodeGraphBackoff retries, for about 3 s, a read the Node authorizer refuses because
// its graph does not have the pod's edge yet (it lags the pod's binding by a moment).
var nodeGraphBackoff = wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 7}

// podCredentials are the credentials of one pod, built once per sync, in the
// kubelet's order: the pod's image pull secrets (one keyring), then the node's
// credentials and the node's credential provider plugins (pullgate's gives, for the
// integrated registry, a token of the pod's service account). Problems with the secrets become events, and notes added to a failed
// pull's message.
type podCredentials struct {
	agent *Agent
	pod   *corev1.Pod

	built    bool
	keyring  credentials.Keyring
	provider credentials.Chain
	problems []string
}

func (p *podCredentials) build(ctx context.Context) {
	if p.built {
		return
	}
	p.built = true
	var configs []*credentials.Config
	var missing []string
	for _, ref := range p.pod.Spec.ImagePullSecrets {
		if ref.Name == "" {
			continue
		}
		// The Node authorizer refuses a secret until its graph has the pod's edge to it,
		// a moment after the pod is bound: retried as a token request is.
		var secret *corev1.Secret
		err := retry.OnError(nodeGraphBackoff, apierrors.IsForbidden, func() (err error) {
			secret, err = p.agent.cfg.Client.CoreV1().Secrets(p.pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			return err
		})
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
			// Not used, and said so (credentials.DifferenceBrokenSecret): the kubelet
			// would fail every pull of the pod. The error names the secret and the
			// field, never the content.
			p.problems = append(p.problems, fmt.Sprintf("image pull secret not used: %v", err))
			p.agent.podEvent(p.pod, corev1.EventTypeWarning, "FailedToParseImagePullSecret", err.Error())
			continue
		}
		p.problems = append(p.problems, cfg.Warnings...)
		configs = append(configs, cfg)
	}
	if len(missing) > 0 {
		p.agent.podEvent(p.pod, corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret",
			fmt.Sprintf("Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", strings.Join(missing, ", ")))
	}
	// Every secret of the pod is one layer, as in the kubelet.
	for _, err := range p.keyring.AddLayer("pod secrets", configs...) {
		p.problems = append(p.problems, err.Error())
	}
	if p.agent.cfg.NodeCredentials != nil {
		node, err := p.agent.cfg.NodeCredentials(ctx)
		if err != nil {
			p.problems = append(p.problems, "the node's credentials are not used: "+err.Error())
		}
		for _, err := range p.keyring.AddLayer("node", node...) {
			p.problems = append(p.problems, err.Error())
		}
	}
	p.provider = credentials.Chain{&p.keyring}
	if p.agent.cfg.CredentialProviders != nil {
		p.provider = append(p.provider, p.agent.cfg.CredentialProviders.ForPod(p.pod))
	}
}

// notes are the problems with the pod's secrets, for a failed pull's message.
func (p *podCredentials) notes() string { return strings.Join(p.problems, "; ") }

// ids are the credentials the pod holds, as pull records name them. Only a cached
// image asks, so only then is the pod's account read.
func (p *podCredentials) ids(ctx context.Context) []string {
	p.build(ctx)
	out := p.keyring.IDs()
	if p.agent.cfg.CredentialProviders != nil {
		// What the plugins would give the pod: its service account's token, and the
		// node's own credentials.
		out = append(out, credentials.NodeProviderID)
		if uid := p.serviceAccountUID(ctx); uid != "" {
			out = append(out, credentials.ServiceAccountID(p.pod.Namespace, serviceAccountName(p.pod), uid))
		}
	}
	slices.Sort(out)
	return out
}

// serviceAccountUID is the UID of the pod's account, by which pull records name it,
// read as the kubelet's plugin runner reads it (the Node authorizer allows the pod's
// own account); empty if it cannot be read.
func (p *podCredentials) serviceAccountUID(ctx context.Context) string {
	var sa *corev1.ServiceAccount
	err := retry.OnError(nodeGraphBackoff, apierrors.IsForbidden, func() (err error) {
		sa, err = p.agent.cfg.Client.CoreV1().ServiceAccounts(p.pod.Namespace).Get(ctx, serviceAccountName(p.pod), metav1.GetOptions{})
		return err
	})
	if err != nil {
		return ""
	}
	return string(sa.UID)
}

func serviceAccountName(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}

// request lists the credentials for image, in order.
func (p *podCredentials) request(ctx context.Context, image credentials.Image) imagepull.Request {
	p.build(ctx)
	req := imagepull.Request{Image: image}
	// Looked up for the repository, as the kubelet looks up repoToPull: its
	// credential provider plugins are asked for that too.
	got, err := p.provider.Candidates(ctx, image.Repository)
	if err == nil {
		req.Credentials = got.List
		p.note(got.Problems)
	}
	req.RealmCredentials = func(host string) []credentials.Candidate {
		got := p.provider.ForHost(ctx, host)
		p.note(got.Problems)
		return got.List
	}
	return req
}

func (p *podCredentials) note(problems error) {
	if problems == nil {
		return
	}
	for _, line := range strings.Split(problems.Error(), "\n") {
		if !slices.Contains(p.problems, line) {
			p.problems = append(p.problems, line)
		}
	}
}
