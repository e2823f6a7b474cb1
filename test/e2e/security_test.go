package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/pkg/credentials"
)

// hostileRegistry is a registry anyone could run: every answer is a 401 whose
// challenge sends clients to realm with a scope of the attacker's choosing. It
// records every Authorization header it is sent.
type hostileRegistry struct {
	host string
	mu   sync.Mutex
	auth []string
}

func newHostileRegistry(t *testing.T, realm, service, scope string) *hostileRegistry {
	t.Helper()
	h := &hostileRegistry{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge := fmt.Sprintf(`Bearer realm=%q,service=%q,scope=%q`, realm, service, scope)
		if a := r.Header.Get("Authorization"); a != "" {
			h.mu.Lock()
			h.auth = append(h.auth, a)
			h.mu.Unlock()
			challenge += `,error="insufficient_scope"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}))
	t.Cleanup(srv.Close)
	h.host = strings.TrimPrefix(srv.URL, "http://")
	return h
}

func (h *hostileRegistry) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.auth...)
}

// A registry anyone controls names pullgate's token service as its realm, with a
// scope of another namespace's repository. A pod pulling "its" image must hand it
// nothing: not its service account's pull secret, not a secret of its own, not the
// cluster pull secret, not even an anonymous token.
func TestHostileRegistryGetsNoTokenOrCredential(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	b := createNamespace(t, ctx, "victim")
	waitForServiceAccount(t, ctx, b, "default")
	pusherCfg := dockerConfigFor(t, ctx, b, "pusher", "admin")
	pushImage(t, ctx, pusherCfg, env.RegistryHost+"/"+b+"/secret:latest")

	hostile := newHostileRegistry(t, "http://"+env.RegistryHost+"/token", tokenauth.Service, "repository:"+b+"/secret:pull,push")
	image := hostile.host + "/" + b + "/secret:latest"
	cli := newCLI(t)

	// 1. The service account's own pull secret, linked to every pod of b.
	waitForPullSecret(t, ctx, b, "default")
	pods := map[string]string{"sa-secret": b}
	createPod(t, ctx, b, "sa-secret", image)

	// 2. A secret for the hostile host itself beside the service account's: the pod
	// "holds a credential for the image's registry", and still nothing goes there.
	cli.ok(ctx, "secret/hostile created\n", "create", "secret", "docker-registry", "hostile", "--docker-server="+hostile.host,
		"--docker-username=u", "--docker-password=p", "-n", b)
	sa := waitForPullSecret(t, ctx, b, "default")
	withSecrets := newPod(b, "own-secret", image)
	withSecrets.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "hostile"}, {Name: sa.Name}}
	if _, err := env.Admin.CoreV1().Pods(b).Create(ctx, withSecrets, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods["own-secret"] = b

	// 3. The cluster pull secret holding a pusher of b's token, for a pod in a
	// namespace with no rights in b.
	token, err := env.ServiceAccountToken(ctx, b, "pusher")
	if err != nil {
		t.Fatal(err)
	}
	clusterCfg, err := credentials.SetAuth(nil, env.RegistryHost, credentials.Credential{Username: "x", Password: token}, credentials.Docker)
	if err != nil {
		t.Fatal(err)
	}
	clusterFile := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(clusterFile, clusterCfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cli.ok(ctx, "secret/pull-secret updated in namespace pullgate-system\n", "adm", "set-pull-secret", clusterFile)
	t.Cleanup(func() { resetClusterPullSecret(t, cli) })
	c := createNamespace(t, ctx, "bystander")
	waitForServiceAccount(t, ctx, c, "default")
	// 4. … and a pod with no secret at all (a named secret that does not exist keeps
	// the service account's off it).
	for _, name := range []string{"cluster-secret", "nothing"} {
		pod := newPod(c, name, image)
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "does-not-exist"}}
		if _, err := env.Admin.CoreV1().Pods(c).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods[name] = c
	}

	for name, ns := range pods {
		w := waitForWaiting(t, ctx, ns, name, "ImagePullBackOff", 30*time.Second)
		if !strings.Contains(w.Message, "pullgate's own token service") {
			t.Errorf("pod %s/%s: message does not say why nothing was sent:\n%s", ns, name, w.Message)
		}
	}
	if got := hostile.received(); len(got) > 0 {
		t.Fatalf("the hostile registry was sent %d credentials or tokens, e.g. %.40s…", len(got), got[0])
	}
	if digest := craneDigest(t, ctx, pusherCfg, env.RegistryHost+"/"+b+"/secret:latest"); digest == "" {
		t.Fatal("b/secret:latest is gone")
	}
}

// The same attack with pullgate's token service under another name (one the node
// reaches it by, that is none of the registry's names): the node recognizes what it
// was given as pullgate's token and sends the hostile registry nothing.
func TestHostileRegistryGetsNoTokenFromAnAliasedRealm(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	_, port, err := net.SplitHostPort(env.RegistryHost)
	if err != nil {
		t.Fatal(err)
	}
	ns := createNamespace(t, ctx, "alias")
	waitForServiceAccount(t, ctx, ns, "default")
	hostile := newHostileRegistry(t, "http://pullgate-alias."+testDomain+":"+port+"/token", tokenauth.Service, "repository:"+ns+"/app:pull")
	createPod(t, ctx, ns, "app", hostile.host+"/"+ns+"/app:latest")
	w := waitForWaiting(t, ctx, ns, "app", "ImagePullBackOff", 30*time.Second)
	if !strings.Contains(w.Message, "pullgate's own token service") {
		t.Errorf("the pod's message does not say why nothing was sent:\n%s", w.Message)
	}
	if got := hostile.received(); len(got) > 0 {
		t.Fatalf("the hostile registry was sent %d tokens, e.g. %.40s…", len(got), got[0])
	}
}

// tokenEndpoint is a token service of the test's own, on a host name (not an IP, which
// clients refuse as a realm), recording what it is asked for.
type tokenEndpoint struct {
	host string
	mu   sync.Mutex
	reqs []*http.Request
}

func newTokenEndpoint(t *testing.T) *tokenEndpoint {
	t.Helper()
	te := &tokenEndpoint{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te.mu.Lock()
		te.reqs = append(te.reqs, r.Clone(context.Background()))
		te.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"token":"issued-by-the-test"}`)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	te.host = "localhost:" + port
	return te
}

func (te *tokenEndpoint) requests() []*http.Request {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]*http.Request(nil), te.reqs...)
}

// Delegated authentication keeps the seed's rule: the token host's credentials go to
// it only when the pod also holds one for the image's registry, and the token asked
// for is the image's own repository, pull only — never the scope a challenge names.
func TestDelegatedRealmGetsOnlyTheImagesPullScope(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	realm := newTokenEndpoint(t)
	registry := newHostileRegistry(t, "http://"+realm.host+"/token", "delegated", "repository:someone-else/crown-jewels:pull,push")
	image := registry.host + "/team/app:v1"
	cli := newCLI(t)

	// Only a credential for the token host: it is not sent.
	ns := createNamespace(t, ctx, "realm-only")
	waitForServiceAccount(t, ctx, ns, "default")
	cli.ok(ctx, "secret/sso created\n", "create", "secret", "docker-registry", "sso", "--docker-server="+realm.host,
		"--docker-username=developer", "--docker-password=sso-pass", "-n", ns)
	pod := newPod(ns, "app", image)
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "sso"}}
	if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForWaiting(t, ctx, ns, "app", "ImagePullBackOff", 30*time.Second)
	for _, r := range realm.requests() {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the token host got a credential although the pod holds none for registry %s", registry.host)
		}
	}

	// Both endpoints: the token host's credential goes to it, for the image's pull.
	ns = createNamespace(t, ctx, "both")
	waitForServiceAccount(t, ctx, ns, "default")
	cli.ok(ctx, "secret/sso created\n", "create", "secret", "docker-registry", "sso", "--docker-server="+realm.host,
		"--docker-username=developer", "--docker-password=sso-pass", "-n", ns)
	cli.ok(ctx, "secret/registry created\n", "create", "secret", "docker-registry", "registry", "--docker-server="+registry.host,
		"--docker-username=registry-user", "--docker-password=other", "-n", ns)
	before := len(realm.requests())
	pod = newPod(ns, "app", image)
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "sso"}, {Name: "registry"}}
	if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForWaiting(t, ctx, ns, "app", "ImagePullBackOff", 30*time.Second)
	reqs := realm.requests()[before:]
	sawSSO := false
	for _, r := range reqs {
		if u, _, ok := r.BasicAuth(); ok && u == "developer" {
			sawSSO = true
		}
		if got := r.URL.Query()["scope"]; len(got) != 1 || got[0] != "repository:team/app:pull" {
			t.Errorf("token requested with scope %q, want only repository:team/app:pull", got)
		}
	}
	if !sawSSO {
		t.Errorf("the token host never got the pod's credential for it (%d requests)", len(reqs))
	}
	for _, a := range registry.received() {
		if a != "Bearer issued-by-the-test" {
			t.Errorf("the registry was sent %.30s…, want only the token its realm issued", a)
		}
	}
}

// A namespace deleted and made again under the same name does not serve its old
// tenant's images: not by tag, digest, tags list, blob, catalog or referrers; a new
// push there starts an empty repository. Deleting an ImageStream alone makes its
// repository unreachable too.
func TestReusedNamespaceNameServesNothingOld(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	name := fmt.Sprintf("reused-%d", time.Now().UnixNano()%1_000_000)
	makeNamespace := func() {
		t.Helper()
		if _, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitForServiceAccount(t, ctx, name, "default")
	}
	t.Cleanup(func() { _ = env.Admin.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	makeNamespace()
	old := env.RegistryHost + "/" + name + "/old"
	oldCfg := dockerConfigFor(t, ctx, name, "pusher", "admin")
	oldDigest := pushFile(t, ctx, oldCfg, old+":secret-v1", []byte("the old tenant's secret"))
	oldLayer := firstLayer(t, ctx, oldCfg, old+":secret-v1")

	if err := env.Admin.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 2*time.Minute, func(ctx context.Context) bool {
		_, err := env.Admin.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}) {
		t.Fatalf("namespace %s was not deleted", name)
	}
	makeNamespace()
	newCfg := dockerConfigFor(t, ctx, name, "pusher", "admin")
	reader := dockerConfigFor(t, ctx, name, "default", "")

	for _, args := range [][]string{
		{"digest", old + ":secret-v1"},
		{"manifest", old + "@" + oldDigest},
		{"ls", old},
		{"blob", old + "@" + oldLayer},
	} {
		out, err := harness.Crane(ctx, reader, args...)
		if err == nil || !strings.Contains(out, "NAME_UNKNOWN") {
			t.Errorf("crane %s in the new %s: %v\n%s; want NAME_UNKNOWN", args[0], name, err, out)
		}
	}
	if out, _ := harness.Crane(ctx, newCfg, "catalog", env.RegistryHost); strings.Contains(out, name+"/old") {
		t.Errorf("the catalog lists the old tenant's %s/old:\n%s", name, out)
	}
	// The Referrers API never answers 404: an empty index.
	status, body := registryGET(t, ctx, newCfg, name+"/old", "/v2/"+name+"/old/referrers/"+oldDigest)
	if status != http.StatusOK || !strings.Contains(body, `"manifests":[]`) {
		t.Errorf("referrers of the old manifest: HTTP %d %s, want an empty index", status, body)
	}

	// The new tenant pushes to the same repository: only its own tag is there.
	pushFile(t, ctx, newCfg, old+":new", []byte("the new tenant's image"))
	if out, err := harness.Crane(ctx, reader, "ls", old); err != nil || strings.TrimSpace(out) != "new" {
		t.Errorf("tags of %s/old after the new push: %v %q, want only new", name, err, out)
	}
	for _, args := range [][]string{{"digest", old + ":secret-v1"}, {"blob", old + "@" + oldLayer}} {
		if out, err := harness.Crane(ctx, reader, args...); err == nil {
			t.Errorf("crane %s of the old tenant's content after the new push succeeded:\n%s", args[0], out)
		}
	}

	// Deleting the ImageStream alone: the repository is gone at once.
	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := dyn.Resource(imageapi.GVR).Namespace(name).Delete(ctx, "old", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		out, err := harness.Crane(ctx, reader, "digest", old+":new")
		return err != nil && strings.Contains(out, "NAME_UNKNOWN")
	}) {
		t.Error("the repository of a deleted imagestream is still served")
	}
}

func firstLayer(t *testing.T, ctx context.Context, cfg, image string) string {
	t.Helper()
	manifest, err := harness.Crane(ctx, cfg, "manifest", image)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal([]byte(manifest), &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest %s: %v", manifest, err)
	}
	return m.Layers[0].Digest
}

// registryGET does GET path with a pull token for repo from the credentials in
// dockerConfig, and returns the status and body.
func registryGET(t *testing.T, ctx context.Context, dockerConfig, repo, path string) (int, string) {
	t.Helper()
	out, err := harness.Crane(ctx, dockerConfig, "auth", "token", env.RegistryHost+"/"+repo)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	_ = json.Unmarshal([]byte(out), &tok)
	return bearerGET(t, ctx, tok.Token, path)
}

func bearerGET(t *testing.T, ctx context.Context, bearer, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+env.RegistryHost+path, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Connections that send a manifest PUT without a token and never finish the body
// are answered 401 at once and closed, instead of being held open with their memory.
func TestUnauthenticatedBodiesAreRefusedAtOnce(t *testing.T) {
	const conns = 20
	errs := make(chan error, conns)
	for i := range conns {
		go func() {
			errs <- func() error {
				c, err := net.Dial("tcp", env.RegistryHost)
				if err != nil {
					return err
				}
				defer c.Close()
				// 100 kB announced, 10 bytes sent: a body that never ends.
				_, err = fmt.Fprintf(c, "PUT /v2/nobody/app%d/manifests/latest HTTP/1.1\r\nHost: %s\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 100000\r\n\r\n{\"schema\":", i, env.RegistryHost)
				if err != nil {
					return err
				}
				// A generous bound, so a slow machine does not fail the test; before the
				// fix, no answer ever came while the body was unfinished.
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				r := bufio.NewReader(c)
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					return fmt.Errorf("no answer to an unauthenticated PUT with an unfinished body: %w", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					return fmt.Errorf("unauthenticated PUT: %s, want 401", resp.Status)
				}
				if _, err := r.ReadByte(); err != io.EOF {
					return fmt.Errorf("the connection was left open after the 401 (read: %v)", err)
				}
				return nil
			}()
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// registryToken asks the token service, with a Kubernetes token as the password,
// for scope; it returns the registry token.
func registryToken(t *testing.T, ctx context.Context, k8sToken string, scopes ...string) string {
	t.Helper()
	status, body, _ := tokenRequest(ctx, k8sToken, scopes...)
	if status != http.StatusOK {
		t.Fatalf("token request: HTTP %d %s", status, body)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tok); err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func tokenRequest(ctx context.Context, password string, scopes ...string) (int, string, http.Header) {
	q := url.Values{"service": {tokenauth.Service}, "scope": scopes}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+env.RegistryHost+"/token?"+q.Encode(), nil)
	if password != "" {
		req.SetBasicAuth("user", password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// A removed RoleBinding bites at the next request, not when the token already held
// expires; and a token signed with the right key but a life longer than the token
// service ever issues is refused.
func TestRevokedGrantBitesAtTheNextRequest(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	a := createNamespace(t, ctx, "revoked-a")
	b := createNamespace(t, ctx, "revoked-b")
	waitForServiceAccount(t, ctx, a, "default")
	repo := b + "/app"
	digest := pushImage(t, ctx, dockerConfigFor(t, ctx, b, "pusher", "admin"), env.RegistryHost+"/"+repo+":v1")
	binding := grantPuller(t, ctx, b, a, "a-pulls")
	aToken, err := env.ServiceAccountToken(ctx, a, "default")
	if err != nil {
		t.Fatal(err)
	}
	manifest := "/v2/" + repo + "/manifests/" + digest
	var bearer string
	if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		bearer = registryToken(t, ctx, aToken, "repository:"+repo+":pull")
		status, _ := bearerGET(t, ctx, bearer, manifest)
		return status == http.StatusOK
	}) {
		t.Fatal("the granted pull never worked")
	}

	if err := env.Admin.RbacV1().RoleBindings(b).Delete(ctx, binding, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var body string
	if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		var status int
		status, body = bearerGET(t, ctx, bearer, manifest)
		return status == http.StatusUnauthorized
	}) {
		t.Fatal("a token issued before the binding was removed still pulls")
	}
	t.Logf("revocation: the old token was refused %s after the RoleBinding was deleted", time.Since(deleted).Round(time.Millisecond))
	if !strings.Contains(body, "DENIED") || !strings.Contains(body, "may not pull from "+repo) {
		t.Errorf("refusal of a revoked token does not say what was refused:\n%s", body)
	}

	// A forged lifetime: the registry's own key, ten years.
	dir, err := pki.Open(filepath.Join(env.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := dir.SigningKey("registry-token")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tokenauth.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	long, err := signer.Sign(tokenauth.Token{Issuer: tokenauth.Issuer, Subject: "system:serviceaccount:" + b + ":pusher", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + b, "system:authenticated"},
		Audience: tokenauth.Service, Access: []*token.ResourceActions{{Type: "repository", Name: repo, Actions: []string{"pull"}}}, IssuedAt: time.Now(), Lifetime: 10 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if status, body := bearerGET(t, ctx, long, manifest); status != http.StatusUnauthorized {
		t.Errorf("a token valid for ten years: HTTP %d %s, want 401", status, body)
	}
}

// Bad logins cost at most one TokenReview each, and a client address that keeps
// failing is answered 429 with Retry-After; a client logged in with a good token
// before is not slowed.
func TestTokenReviewsAreNotAmplified(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "flood")
	waitForServiceAccount(t, ctx, ns, "default")
	good, err := env.ServiceAccountToken(ctx, ns, "default")
	if err != nil {
		t.Fatal(err)
	}
	scope := "repository:" + ns + "/app:pull"
	if status, body, _ := tokenRequest(ctx, good, scope); status != http.StatusOK {
		t.Fatalf("good login: HTTP %d %s", status, body)
	}
	reviews := func() float64 {
		var sum float64
		for _, result := range []string{"authenticated", "unauthenticated", "error"} {
			v, _ := env.Metric(`pullgate_token_reviews_total{result="` + result + `"}`)
			sum += v
		}
		return sum
	}

	before := reviews()
	for range 10 {
		tokenRequest(ctx, "the-same-bad-password", scope)
	}
	if got := reviews() - before; got != 1 {
		t.Errorf("10 logins with one bad password cost %v TokenReviews, want 1", got)
	}

	before = reviews()
	answered, limited := 0, 0
	for i := range 100 {
		status, body, header := tokenRequest(ctx, fmt.Sprintf("bad-password-%d", i), scope)
		switch status {
		case http.StatusUnauthorized:
			answered++
		case http.StatusTooManyRequests:
			limited++
			if header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After: %s", body)
			}
		default:
			t.Fatalf("bad login %d: HTTP %d %s", i, status, body)
		}
	}
	if limited == 0 {
		t.Error("100 bad logins from one address in a row were never rate-limited")
	}
	if got := reviews() - before; got > float64(answered) {
		t.Errorf("%d bad logins answered 401 cost %v TokenReviews", answered, got)
	}
	if status, body, _ := tokenRequest(ctx, good, scope); status != http.StatusOK {
		t.Errorf("a client already known good was slowed by another's failures: HTTP %d %s", status, body)
	}
	if v, err := env.Metric(`pullgate_token_requests_total{result="rate_limited"}`); err != nil || v < float64(limited) {
		t.Errorf("rate-limited requests metric %v (%v), want at least %d", v, err, limited)
	}
	// Leave the address able to log in again for the tests after this one.
	fresh, err := env.ServiceAccountToken(ctx, ns, "default")
	if err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		status, _, _ := tokenRequest(ctx, fresh, scope)
		return status == http.StatusOK
	}) {
		t.Fatal("the address was never allowed to log in again")
	}
}

// Anyone can flood the token service with bad logins from an address many good
// clients share (here the node agent and crane, on 127.0.0.1, like a NAT or a node):
// the flood is limited, and none of them is locked out — a fresh, valid token is
// still reviewed and accepted, and a new pod pulls.
func TestBadLoginFloodLocksNoGoodClientOut(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	ns := createNamespace(t, ctx, "nat")
	waitForServiceAccount(t, ctx, ns, "default")
	pusherCfg := dockerConfigFor(t, ctx, ns, "pusher", "admin")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	digest := pushFile(t, ctx, pusherCfg, image, []byte("behind a NAT"))
	waitForPullSecret(t, ctx, ns, "default")
	scope := "repository:" + ns + "/app:pull"

	floodCtx, stop := context.WithCancel(ctx)
	var flooded atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; floodCtx.Err() == nil; i++ {
				tokenRequest(floodCtx, fmt.Sprintf("flood-%d-%d", g, i), scope)
				flooded.Add(1)
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		status, _, _ := tokenRequest(ctx, "one-more-bad-password", scope)
		return status == http.StatusTooManyRequests
	}) {
		t.Fatal("the flood was never rate-limited")
	}

	fresh, err := env.ServiceAccountToken(ctx, ns, "default")
	if err != nil {
		t.Fatal(err)
	}
	if status, body, _ := tokenRequest(ctx, fresh, scope); status != http.StatusOK {
		t.Errorf("a fresh, valid token from the flooded address: HTTP %d %s", status, body)
	}
	reader := dockerConfigFor(t, ctx, ns, "reader", "")
	if got := craneDigest(t, ctx, reader, image); got != digest {
		t.Errorf("crane with a new account's token during the flood: digest %q, want %s", got, digest)
	}
	pod := waitForCondition(t, ctx, ns, createPod(t, ctx, ns, "app", image), corev1.ConditionTrue, time.Minute)
	if id := pod.Status.ContainerStatuses[0].ImageID; !strings.HasSuffix(id, digest) {
		t.Errorf("the pod pulled %s, want %s", id, digest)
	}
	t.Logf("%d bad logins sent during the test", flooded.Load())
	stop()
	wg.Wait()
	// Leave the address able to fail a login again for the tests after this one.
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		status, _, _ := tokenRequest(ctx, "after-the-flood", scope)
		return status == http.StatusUnauthorized
	}) {
		t.Fatal("the address stayed limited after the flood")
	}
}

// An image on the node is not given to a pod whose grant was removed since it was
// pulled, nor to one whose pull secret was rotated under the same name.
func TestNodeCacheFollowsRevocationAndRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	a := createNamespace(t, ctx, "cache-a")
	b := createNamespace(t, ctx, "cache-b")
	waitForServiceAccount(t, ctx, a, "default")
	image := env.RegistryHost + "/" + b + "/app:v1"
	pushFile(t, ctx, dockerConfigFor(t, ctx, b, "pusher", "admin"), image, []byte("cache "+b))
	binding := grantPuller(t, ctx, b, a, "a-pulls")
	waitForCondition(t, ctx, a, createPod(t, ctx, a, "first", image), corev1.ConditionTrue, 30*time.Second)

	if err := env.Admin.RbacV1().RoleBindings(b).Delete(ctx, binding, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The registry and the node decide from the same informers: once the registry
	// refuses, so must the node.
	aCfg := dockerConfigFor(t, ctx, a, "default", "")
	if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		_, err := harness.Crane(ctx, aCfg, "digest", image)
		return err != nil
	}) {
		t.Fatal("the registry still lets the revoked account pull")
	}
	w := waitForWaiting(t, ctx, a, createPod(t, ctx, a, "after-revoke", image), "ImagePullBackOff", 30*time.Second)
	if !strings.Contains(w.Message, "is on this node, but this pod's credentials cannot pull it now") {
		t.Errorf("a pod whose grant was removed: %s", w.Message)
	}

	// Rotation, on a registry outside pullgate: the same secret, new content.
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	writeHtpasswd(t, htpasswd, map[string]string{"developer": "dev-pass"})
	port := freePort(t)
	private := fmt.Sprintf("localhost:%d", port)
	startProcess(t, "registry is serving", "registry", "serve", "--standalone", "--htpasswd", htpasswd,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", t.TempDir())
	privateImage := private + "/team/app:v1"
	pushImage(t, ctx, basicDockerConfig(t, map[string][2]string{private: {"developer", "dev-pass"}}), privateImage)

	ns := createNamespace(t, ctx, "rotated")
	waitForServiceAccount(t, ctx, ns, "default")
	cli := newCLI(t)
	cli.ok(ctx, "secret/pull created\n", "create", "secret", "docker-registry", "pull", "--docker-server="+private,
		"--docker-username=developer", "--docker-password=dev-pass", "-n", ns)
	withSecret := func(name string) string {
		pod := newPod(ns, name, privateImage)
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull"}}
		if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return name
	}
	waitForCondition(t, ctx, ns, withSecret("before"), corev1.ConditionTrue, 30*time.Second)
	secret, err := env.Admin.CoreV1().Secrets(ns).Get(ctx, "pull", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := credentials.SetAuth(nil, private, credentials.Credential{Username: "developer", Password: "revoked"}, credentials.Docker)
	if err != nil {
		t.Fatal(err)
	}
	secret.Data[corev1.DockerConfigJsonKey] = data
	if _, err := env.Admin.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w = waitForWaiting(t, ctx, ns, withSecret("after-rotation"), "ImagePullBackOff", 30*time.Second)
	if !strings.Contains(w.Message, "is on this node") {
		t.Errorf("a pod whose secret now holds another credential: %s", w.Message)
	}
}

// A refusal names only what was refused: a builder allowed to push to its own
// repository but not to read another namespace's is told about the read only.
func TestDeniedNamesOnlyTheRefusedAction(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	a := createNamespace(t, ctx, "builder-a")
	b := createNamespace(t, ctx, "secret-b")
	waitForServiceAccount(t, ctx, a, "builder")
	pusher := dockerConfigFor(t, ctx, b, "pusher", "admin")
	img := env.RegistryHost + "/" + b + "/secret:v1"
	pushImage(t, ctx, pusher, img)
	layer := firstLayer(t, ctx, pusher, img)
	builder, err := env.ServiceAccountToken(ctx, a, "builder")
	if err != nil {
		t.Fatal(err)
	}
	var status int
	var body string
	if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		bearer := registryToken(t, ctx, builder, "repository:"+a+"/x:pull,push", "repository:"+b+"/secret:pull")
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
			"http://"+env.RegistryHost+"/v2/"+a+"/x/blobs/uploads/?mount="+layer+"&from="+b+"/secret", nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		status, body = resp.StatusCode, string(data)
		return status == http.StatusUnauthorized
	}) {
		t.Fatalf("a mount from a namespace the builder may not read: HTTP %d %s", status, body)
	}
	if !strings.Contains(body, "may not pull from "+b+"/secret") {
		t.Errorf("refusal does not name the missing pull of %s/secret:\n%s", b, body)
	}
	if strings.Contains(body, "push to "+a+"/x") {
		t.Errorf("refusal names the push to %s/x, which was granted:\n%s", a, body)
	}
}

func resetClusterPullSecret(t *testing.T, cli *cliEnv) {
	empty := filepath.Join(t.TempDir(), "empty.json")
	_ = os.WriteFile(empty, []byte(`{"auths": {}}`), 0o600)
	cli.run(context.Background(), "adm", "set-pull-secret", empty)
}
