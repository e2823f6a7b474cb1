package explain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/internal/node/clusterpullsecret"
	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/location"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Decider is RBAC's decision for the integrated registry: the token service's
// authorizer (rbacauthz.Authorizer).
type Decider interface {
	Decide(user rbacauthz.User, req rbacauthz.Request) rbacauthz.Decision
}

// Explainer explains pulls with the user's own client: it reads only what the user
// may read.
type Explainer struct {
	Client kubernetes.Interface
	// Authz decides the integrated registry's pulls; nil when the user may not read
	// RBAC (the decision is then left out, and said so).
	Authz Decider
	// RegistryHosts are the integrated registry's names.
	RegistryHosts location.Hosts
	// CredentialProvider says the nodes run pullgate's credential provider (as up's
	// node does): a pod's service account token pulls from the integrated registry.
	CredentialProvider bool
	// Puller, when set, probes the registry live.
	Puller *imagepull.Puller
}

// Pod explains every image of a pod: init containers, containers, ephemeral ones.
func (e *Explainer) Pod(ctx context.Context, namespace, podName string) (Report, error) {
	pod, err := e.Client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return Report{}, fmt.Errorf("pod %s/%s: %w", namespace, podName, err)
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	in := input{namespace: namespace, serviceAccount: sa, pod: pod, nodeCredentials: true}
	for _, ref := range pod.Spec.ImagePullSecrets {
		in.secrets = append(in.secrets, namespace+"/"+ref.Name)
	}
	statuses := map[string]corev1.ContainerStatus{}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, s := range list {
			statuses[s.Name] = s
		}
	}
	add := func(kind, name, image string) {
		img := ImageReport{Image: image, Container: kind + name}
		if s, ok := statuses[name]; ok && s.ImageID != "" {
			in.pulled = append(in.pulled, image) // on the pod's node: its status says so
		}
		if s, ok := statuses[name]; ok && s.State.Waiting != nil {
			img.PodStatus = s.State.Waiting.Reason
			if s.State.Waiting.Message != "" {
				img.PodStatus += ": " + s.State.Waiting.Message
			}
		}
		in.images = append(in.images, img)
	}
	for _, c := range pod.Spec.InitContainers {
		add("init container ", c.Name, c.Image)
	}
	for _, c := range pod.Spec.Containers {
		add("container ", c.Name, c.Image)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		add("ephemeral container ", c.Name, c.Image)
	}
	return e.explain(ctx, in), nil
}

// ServiceAccount explains a pull of image by a pod of the service account
// namespace/name that does not exist yet: with the account's pull secrets, as the
// ServiceAccount admission would copy them.
func (e *Explainer) ServiceAccount(ctx context.Context, image, namespace, name string) (Report, error) {
	sa, err := e.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Report{}, fmt.Errorf("service account %s/%s: %w", namespace, name, err)
	}
	in := input{namespace: namespace, serviceAccount: name, nodeCredentials: true, images: []ImageReport{{Image: image}}}
	for _, ref := range sa.ImagePullSecrets {
		in.secrets = append(in.secrets, namespace+"/"+ref.Name)
	}
	return e.explain(ctx, in), nil
}

// Credentials explains a pull of image with these credentials alone: secrets
// (namespace/name) and parsed files.
func (e *Explainer) Credentials(ctx context.Context, image string, secrets []string, files []*credentials.Config) Report {
	return e.explain(ctx, input{secrets: secrets, files: files, images: []ImageReport{{Image: image}}})
}

type input struct {
	namespace, serviceAccount string
	pod                       *corev1.Pod
	secrets                   []string // namespace/name
	files                     []*credentials.Config
	nodeCredentials           bool
	images                    []ImageReport
	pulled                    []string // images the pod's status says are on its node
}

func (e *Explainer) explain(ctx context.Context, in input) Report {
	r := Report{Images: in.images}
	if in.serviceAccount != "" {
		r.ServiceAccount = in.namespace + "/" + in.serviceAccount
	}
	if in.pod != nil {
		r.Pod, r.Node = in.pod.Namespace+"/"+in.pod.Name, in.pod.Spec.NodeName
	}
	configs, problems := e.readSecrets(ctx, in.secrets)
	r.Problems = append(r.Problems, problems...)
	configs = append(configs, in.files...)
	var keyring credentials.Keyring
	for _, err := range keyring.AddLayer("pod secrets", configs...) {
		r.Problems = append(r.Problems, Problem{Kind: "broken", Message: err.Error()})
	}
	if in.nodeCredentials {
		node, err := clusterpullsecret.Get(ctx, e.Client)
		if err != nil {
			r.Problems = append(r.Problems, Problem{Kind: "unreadable", Secret: clusterpullsecret.Namespace + "/" + clusterpullsecret.Name,
				Message: fmt.Sprintf("the cluster pull secret is left out: %v", err)})
		}
		keyring.AddLayer("node", node...)
	}
	// Secrets of the namespace the pod does not hold: the seed's race (linked to the
	// account after the pod was created) and secrets never linked.
	var elsewhere []namespaceSecret
	if in.pod != nil {
		elsewhere = e.namespaceSecrets(ctx, in.pod, in.serviceAccount)
	}
	var nodeImages []string
	if r.Node != "" {
		if node, err := e.Client.CoreV1().Nodes().Get(ctx, r.Node, metav1.GetOptions{}); err == nil {
			for _, img := range node.Status.Images {
				nodeImages = append(nodeImages, img.Names...)
			}
		}
	}
	for i := range r.Images {
		img := &r.Images[i]
		// Parsed once, here, where the image enters; everything below takes the type.
		parsed, err := credentials.ParseImage(img.Image)
		if err != nil {
			// The kubelet's words when its parser refuses it too.
			if _, kerr := credentials.ImageRepository(img.Image); kerr != nil {
				err = kerr
			}
			img.Verdict = Verdict{Cause: err.Error()}
			continue
		}
		img.parsed = parsed
		ref := parsed.Ref
		e.image(ctx, in, &keyring, img)
		if r.Node != "" {
			on := slices.Contains(in.pulled, img.Image) || slices.Contains(nodeImages, img.Image) || slices.Contains(nodeImages, ref.Name())
			img.OnNode = &on
		}
		// With the credential provider, an account's own <sa>-dockercfg is not needed.
		img.Problems = notHeld(img, elsewhere, in, e.CredentialProvider && e.RegistryHosts.Holds(ref))
		img.Verdict = verdict(img, r.Problems, img.Problems, in)
	}
	return r
}

// readSecrets reads and parses each secret; what is wrong with one is a problem
// with its fix.
func (e *Explainer) readSecrets(ctx context.Context, names []string) ([]*credentials.Config, []Problem) {
	var configs []*credentials.Config
	var problems []Problem
	for _, full := range names {
		ns, n, _ := strings.Cut(full, "/")
		secret, err := e.Client.CoreV1().Secrets(ns).Get(ctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			problems = append(problems, Problem{Kind: "missing", Secret: full,
				Message: fmt.Sprintf("image pull secret %s does not exist: the kubelet goes on without it", full),
				Fix:     fmt.Sprintf("pullgate create secret docker-registry %s --docker-server=… --docker-username=… --docker-password=… -n %s", n, ns)})
			continue
		case err != nil:
			problems = append(problems, Problem{Kind: "unreadable", Secret: full, Message: fmt.Sprintf("image pull secret %s could not be read: %v", full, err)})
			continue
		}
		cfg, err := credentials.FromSecret(secret)
		if err != nil {
			p := Problem{Kind: "broken", Secret: full, Message: err.Error()}
			if errors.Is(err, credentials.ErrWrongType) {
				p.Kind = "wrong-type"
				if secret.Type == corev1.SecretTypeOpaque || secret.Type == "" {
					p.Fix = fmt.Sprintf("kubectl get secret %s -n %s -o jsonpath='{.data.\\.dockerconfigjson}' | base64 -d > config.json && kubectl delete secret %s -n %s && pullgate create secret generic %s --from-file=.dockerconfigjson=config.json --type=kubernetes.io/dockerconfigjson -n %s",
						n, ns, n, ns, n, ns)
				}
			}
			problems = append(problems, p)
			continue
		}
		for _, w := range cfg.Warnings {
			problems = append(problems, Problem{Kind: "broken", Secret: full, Message: w})
		}
		configs = append(configs, cfg)
	}
	return configs, problems
}

// namespaceSecret is a pull secret of the pod's namespace the pod does not list.
type namespaceSecret struct {
	name         string
	onAccount    bool
	config       *credentials.Config
	integratedSA bool // a <sa>-dockercfg the controllers wrote
}

// namespaceSecrets are the pull secrets of the pod's namespace that the pod does not
// list, and whether its service account does (linked after the pod was created: the
// ServiceAccount admission copies an account's secrets only then).
func (e *Explainer) namespaceSecrets(ctx context.Context, pod *corev1.Pod, saName string) []namespaceSecret {
	onAccount := map[string]bool{}
	if sa, err := e.Client.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, saName, metav1.GetOptions{}); err == nil {
		for _, ref := range sa.ImagePullSecrets {
			onAccount[ref.Name] = true
		}
	}
	list, err := e.Client.CoreV1().Secrets(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []namespaceSecret
	for i := range list.Items {
		s := &list.Items[i]
		if slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == s.Name }) {
			continue
		}
		cfg, err := credentials.FromSecret(s)
		if err != nil {
			continue
		}
		out = append(out, namespaceSecret{name: s.Name, onAccount: onAccount[s.Name], config: cfg,
			integratedSA: s.Annotations[corev1.ServiceAccountNameKey] != ""})
	}
	return out
}

// notHeld are the namespace's secrets that would give image a credential but that the
// pod does not hold, each with its fix.
func notHeld(img *ImageReport, secrets []namespaceSecret, in input, skipAccountSecrets bool) []Problem {
	var out []Problem
	for _, s := range secrets {
		if skipAccountSecrets && s.integratedSA {
			continue
		}
		var k credentials.Keyring
		k.AddLayer("secret", s.config)
		if m, err := k.Lookup(img.parsed.Repository); err != nil || len(m) == 0 {
			continue
		}
		full := in.namespace + "/" + s.name
		if s.onAccount {
			msg := fmt.Sprintf("secret %s holds a credential for %s and is on service account %s, but not on the pod: the pod was created before %s had it; recreate the pod", s.name, img.registry(), in.serviceAccount, in.serviceAccount)
			out = append(out, Problem{Kind: "not-on-pod", Secret: full, Message: msg, Fix: recreate(in.pod, s.name)})
			continue
		}
		if s.integratedSA {
			continue // another account's own secret: not for this pod
		}
		out = append(out, Problem{Kind: "not-linked", Secret: full,
			Message: fmt.Sprintf("secret %s holds a credential for %s, but it is not linked to service account %s for pull", s.name, img.registry(), in.serviceAccount),
			Fix:     fmt.Sprintf("pullgate secrets link %s %s --for=pull -n %s && %s", in.serviceAccount, s.name, in.namespace, recreate(in.pod, s.name))})
	}
	return out
}

// recreate is the command that makes the pod again with these image pull secrets
// (a pod's are fixed when it is created): the pod's own, then extra ones, as the
// ServiceAccount admission would have copied them had they been linked in time.
func recreate(pod *corev1.Pod, extra ...string) string {
	var names []string
	for _, ref := range pod.Spec.ImagePullSecrets {
		names = append(names, ref.Name)
	}
	for _, n := range extra {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	var refs []string
	for _, n := range names {
		refs = append(refs, fmt.Sprintf(`{"name":%q}`, n))
	}
	patch := fmt.Sprintf(`[{"op":"add","path":"/spec/imagePullSecrets","value":[%s]}]`, strings.Join(refs, ","))
	return fmt.Sprintf("kubectl get pod %s -n %s -o yaml | kubectl patch --local -f - --type=json -p '%s' -o yaml | kubectl replace --force -f -", pod.Name, pod.Namespace, patch)
}

// image fills in what is known of one image: credentials, the integrated registry's
// decision, and the probe.
func (e *Explainer) image(ctx context.Context, in input, keyring *credentials.Keyring, img *ImageReport) {
	parsed, ref := img.parsed, img.parsed.Ref
	considered, err := keyring.Consider(img.Image)
	if err != nil {
		img.Verdict = Verdict{Cause: err.Error()}
		return
	}
	for _, c := range considered {
		what := c.Credential.String()
		if c.Helper != "" {
			what = "docker-credential-" + c.Helper
		}
		k := Considered{Source: c.Source.String(), Layer: c.Layer, Key: c.Key, NormalizedKey: c.NormalizedKey, What: what, Matched: c.Matched, Why: c.Why}
		if c.Matched {
			k.Rank = c.Rank + 1
		}
		img.Credentials = append(img.Credentials, k)
	}
	integrated := e.RegistryHosts.Holds(ref)
	tokenPath := integrated && e.CredentialProvider && in.serviceAccount != ""
	if tokenPath {
		img.Credentials = append(img.Credentials, Considered{
			Source: "pullgate's credential provider", Layer: "credential provider", What: "token of service account " + in.namespace + "/" + in.serviceAccount,
			Matched: true, Rank: countMatched(img.Credentials) + 1, Why: "the integrated registry: the pod's own service account, bound to the pod (KEP-4412)"})
	}
	if integrated && in.serviceAccount != "" {
		img.Integrated = e.decide(ref, in.namespace, in.serviceAccount)
	}
	if e.Puller == nil {
		return
	}
	req := imagepull.Request{Image: parsed}
	if got, err := keyring.Candidates(ctx, parsed.Repository); err == nil {
		req.Credentials = got.List
	}
	if tokenPath {
		c, err := e.serviceAccountToken(ctx, in)
		if err != nil {
			img.Probe = &Probe{Error: err.Error()}
			return
		}
		req.Credentials = append(req.Credentials, c)
	}
	req.RealmCredentials = func(host string) []credentials.Candidate { return keyring.ForHost(ctx, host).List }
	probe := e.Puller.Probe(ctx, req)
	img.Probe = &Probe{Realm: probe.Realm, Steps: probe.Steps}
	if probe.Err != nil {
		img.Probe.Reason, img.Probe.Error = probe.Err.Reason, probe.Err.Message
	}
	if probe.TokenHost != "" {
		img.Delegated = &Delegated{Realm: probe.Realm, TokenHost: probe.TokenHost,
			ForTokenHost: len(keyring.LookupHost(probe.TokenHost)), ForRegistry: countMatched(img.Credentials)}
	}
}

func countMatched(cs []Considered) int {
	n := 0
	for _, c := range cs {
		if c.Matched {
			n++
		}
	}
	return n
}

// decide is the token service's decision for a pull of image by the service
// account, with the binding that grants it or the command that would.
func (e *Explainer) decide(ref name.Reference, namespace, sa string) *Integrated {
	repo := ref.Context().RepositoryStr()
	user := rbacauthz.ServiceAccountUser(namespace, sa)
	out := &Integrated{Repository: repo, Identity: user.Name}
	target, stream, ok := tokenauth.SplitRepository(repo)
	if !ok {
		return out
	}
	if e.Authz == nil {
		out.Undecided = true
		out.Fix = "you may not read the cluster's RBAC, so the decision is unknown: ask an administrator to run pullgate explain pull"
		return out
	}
	d := e.Authz.Decide(user, tokenauth.RequestFor("pull", target, stream))
	out.Allowed = d.Allowed
	if d.Allowed {
		out.Binding = strings.SplitN(d.String(), " grants ", 2)[0]
		out.Role = strings.ToLower(d.Role.Kind) + " " + d.Role.Name
		out.Subject = strings.ToLower(d.Subject.Kind) + " " + d.Subject.Name
		if d.Subject.Kind == "ServiceAccount" {
			out.Subject = "serviceaccount " + d.Subject.Namespace + "/" + d.Subject.Name
			if d.Subject.Namespace == "" {
				out.Subject = "serviceaccount " + target + "/" + d.Subject.Name
			}
		}
		return out
	}
	out.Fix = fmt.Sprintf("pullgate policy add-role-to-user system:image-puller %s -n %s", user.Name, target)
	out.AlternativeFix = fmt.Sprintf("pullgate policy add-role-to-group system:image-puller system:serviceaccounts:%s -n %s", namespace, target)
	return out
}

// serviceAccountToken is what the credential provider would give: a token of the
// account for the registry's audience, bound to the pod when there is one.
func (e *Explainer) serviceAccountToken(ctx context.Context, in input) (credentials.Candidate, error) {
	spec := authenticationv1.TokenRequestSpec{Audiences: []string{tokenauth.Service}}
	if in.pod != nil {
		spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: in.pod.Name, UID: in.pod.UID}
	}
	tr, err := e.Client.CoreV1().ServiceAccounts(in.namespace).CreateToken(ctx, in.serviceAccount, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return credentials.Candidate{}, fmt.Errorf("no token of service account %s/%s to probe with: %v", in.namespace, in.serviceAccount, err)
	}
	return credentials.Candidate{
		AuthConfig:  authn.AuthConfig{Username: "serviceaccount", Password: tr.Status.Token},
		Description: fmt.Sprintf("pullgate's credential provider, token of service account %s/%s", in.namespace, in.serviceAccount),
		Identity:    serviceaccount.MakeUsername(in.namespace, in.serviceAccount),
	}, nil
}
