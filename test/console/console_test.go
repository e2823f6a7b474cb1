// Package console drives pullgate's web console in headless Chromium (Debian's
// chromium, through chromedp) against a real `pullgate up`: it walks the seed through
// the pages, asserting what they show, and saves a screenshot of each page.
package console

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

var env *harness.Env

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, &env, harness.Options{}))
}

// consoleURL is the login URL up printed with its ready line.
func consoleURL(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`console: (http://127\.0\.0\.1:\d+/login\?token=[0-9a-f]+)`).FindStringSubmatch(env.LogTail(200))
	if m == nil {
		t.Fatalf("up's ready line has no console URL:\n%s", env.LogTail(40))
	}
	return m[1]
}

// screenshots is where the pictures go: PULLGATE_SCREENSHOTS (make screenshots:
// docs/screenshots), else the test's artifacts under bin/.
func screenshots(t *testing.T) string {
	dir := os.Getenv("PULLGATE_SCREENSHOTS")
	if dir == "" {
		bin, err := harness.Binary()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(filepath.Dir(bin), "test-artifacts", "console")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed: install it with sudo apt-get install -y chromium (make tools does, as root or with sudo)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 800),
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		// Chromium's own temporary directories go with the test's, not into /tmp.
		chromedp.Env("TMPDIR="+t.TempDir()))
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	return bctx
}

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	// JPEG at quality 50: a text page stays sharp at a fraction of a PNG's size, so
	// the README's pictures stay small in the repository.
	res, err := chromedp.Call(ctx, page.CaptureScreenshot, page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatJpeg, Quality: ptr.To[int64](50)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".jpg"), res.Data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// text is the visible text of the page's main element.
func text(t *testing.T, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSee(t *testing.T, ctx context.Context, page string, wants ...string) {
	t.Helper()
	got := text(t, ctx)
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not show %q:\n%s", page, w, got)
		}
	}
}

func namespace(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if _, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The seed, in the browser: project-a's pod cannot pull project-b's image; the
// "who can pull" page grants project-a's account; the pod pulls; a Podman auth.json
// is uploaded as a pull secret and linked to project-a's default account.
func TestConsoleWalksTheSeed(t *testing.T) {
	ctx := harness.Context(t, 5*time.Minute)
	dir := screenshots(t)
	b := browser(t, ctx)
	a, pb := "project-a", "project-b"
	namespace(t, ctx, a)
	namespace(t, ctx, pb)
	token, err := env.Account(ctx, pb, "pusher", "admin")
	if err != nil {
		t.Fatal(err)
	}
	image := env.RegistryHost + "/" + pb + "/app:v1"
	pusher := harness.DockerConfigFor(t, env.RegistryHost, credentials.Credential{Username: "pullgate", Password: token})
	subject, err := harness.PushFile(ctx, pusher, image, []byte("the seed's image"))
	if err != nil {
		t.Fatal(err)
	}
	sbom := pushReferrer(t, env.RegistryHost+"/"+pb+"/app", subject, token)
	if _, err := harness.PushFile(ctx, pusher, env.RegistryHost+"/"+pb+"/app:v2", []byte("a second tag")); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		_, err := env.Admin.CoreV1().ServiceAccounts(a).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}) {
		t.Fatal("no default service account in project-a")
	}
	if _, err := env.Admin.CoreV1().Pods(a).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.WaitForImagesPulled(t, ctx, a, "app", corev1.ConditionFalse, time.Minute)

	base := strings.Split(consoleURL(t), "/login")[0]
	if err := chromedp.Do(b, chromedp.Navigate(consoleURL(t)), chromedp.WaitVisible(chromedp.CSS("table"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "the projects page", a, pb)
	shot(t, b, dir, "projects")

	// The stuck pod, with the explain diagnosis and its fix.
	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects/"+a+"/pods/app"), chromedp.WaitVisible(chromedp.CSS(".verdict"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "the stuck pod's page", "ImagePullBackOff", "Would not pull", "pullgate policy add-role-to-user system:image-puller system:serviceaccount:project-a:default -n project-b")
	shot(t, b, dir, "pod-stuck")

	// Who can pull from project-b, then the grant, through the form.
	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects/"+pb), chromedp.WaitVisible(chromedp.ID("subject")),
		chromedp.SendKeys(chromedp.ID("subject"), "system:serviceaccount:project-a:default"),
		chromedp.Submit(chromedp.ID("subject")), chromedp.WaitVisible(chromedp.CSS(".flash"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "project-b after the grant", `clusterrole.rbac.authorization.k8s.io/system:image-puller added: "system:serviceaccount:project-a:default"`,
		"system:serviceaccount:project-a:default", "rolebinding project-b/system:image-puller", "app", "podman pull "+env.RegistryHost+"/project-b/app:v1")
	shot(t, b, dir, "project-who-can-pull")

	// The pod pulls; its page says so.
	env.WaitForImagesPulled(t, ctx, a, "app", corev1.ConditionTrue, time.Minute)
	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects/"+a+"/pods/app"), chromedp.WaitVisible(chromedp.CSS(".verdict"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "the pulled pod's page", "ImagesPulled", "Would pull")
	shot(t, b, dir, "pod-pulled")

	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects/"+pb+"/imagestreams/app"), chromedp.WaitVisible(chromedp.CSS("table"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "the image stream", "v1", "v2", "sha256:", "podman pull "+env.RegistryHost+"/project-b/app:v2",
		"referrer "+sbom[:19]+" application/vnd.example.sbom+json")
	if !regexp.MustCompile(`\d(\.\d+)?k?B`).MatchString(text(t, b)) {
		t.Errorf("the image stream shows no size:\n%s", text(t, b))
	}
	shot(t, b, dir, "imagestream")

	// Anyone who may edit the stream may write its repository annotation: the pull
	// command the console shows comes from the registry's own naming, not from it.
	if _, err := env.Kubectl(ctx, "annotate", "--overwrite", "-n", pb, "imagestreams.image.pullgate.dev/app", "image.pullgate.dev/repository=victim/secret"); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects/"+pb+"/imagestreams/app"), chromedp.WaitVisible(chromedp.CSS("table"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "the image stream with a forged repository annotation", "podman pull "+env.RegistryHost+"/project-b/app:v2")
	if strings.Contains(text(t, b), "victim/secret") {
		t.Errorf("the console shows the forged repository as the pull command:\n%s", text(t, b))
	}

	if err := chromedp.Do(b, chromedp.Navigate(base+"/graph"), chromedp.WaitVisible(chromedp.CSS("img.graph"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "the graph page", "project-a", "project-b", "system:serviceaccount:project-a:default")
	shot(t, b, dir, "graph")

	// A Podman auth.json, uploaded as a pull secret, then linked for pull.
	authJSON := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(authJSON, []byte(`{"auths": {"quay.io": {"auth": "`+credentials.EncodeAuth("developer", "s3cret")+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects/"+a), chromedp.WaitVisible(chromedp.ID("secret-name")),
		chromedp.SendKeys(chromedp.ID("secret-name"), "quay-pull"),
		chromedp.SetUploadFiles(chromedp.ID("config"), []string{authJSON}),
		chromedp.Submit(chromedp.ID("secret-name")), chromedp.WaitVisible(chromedp.CSS(".flash"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "project-a after the upload", "secret/quay-pull created")
	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects/"+a+"/serviceaccounts/default"), chromedp.WaitVisible(chromedp.ID("secret")),
		chromedp.SetValue(chromedp.ID("secret"), "quay-pull"), chromedp.Submit(chromedp.ID("secret")), chromedp.WaitVisible(chromedp.CSS(".flash"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "the service account after the link", "secret quay-pull linked to service account default for pull", "quay-pull", "quay.io")
	if strings.Contains(text(t, b), "s3cret") {
		t.Error("the page shows the secret's password")
	}
	shot(t, b, dir, "serviceaccount")
	sa, err := env.Admin.CoreV1().ServiceAccounts(a).Get(ctx, "default", metav1.GetOptions{})
	if err != nil || !containsRef(sa.ImagePullSecrets, "quay-pull") {
		t.Errorf("service account default's pull secrets: %v (%v)", sa.ImagePullSecrets, err)
	}

	// Keyboard: the first Tab reaches a link. A phone-wide window has no sideways
	// scroll. With JavaScript off (the pages have none) the projects still show.
	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects"), chromedp.WaitVisible(chromedp.CSS("table")), chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	tag, err := chromedp.Run(b, chromedp.Evaluate[string](`document.activeElement.tagName`))
	if err != nil {
		t.Fatal(err)
	}
	if tag != "A" {
		t.Errorf("the first Tab focuses %q, want a link", tag)
	}
	if err := chromedp.Do(b, chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/projects/"+pb), chromedp.WaitVisible(chromedp.CSS("table"))); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(b, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Error("at phone width the project page scrolls sideways")
	}
	shot(t, b, dir, "project-phone")
	if err := chromedp.Do(b, chromedp.ResetViewport()); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(b, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Navigate(base+"/projects"), chromedp.WaitVisible(chromedp.CSS("table"))); err != nil {
		t.Fatal(err)
	}
	mustSee(t, b, "the projects page without JavaScript", a, pb)
	t.Logf("screenshots in %s", dir)
}

// pushReferrer pushes an SBOM-like artifact whose subject is the manifest subject of
// repo, as cosign or oras attach would, and returns its digest.
func pushReferrer(t *testing.T, repo, subject, token string) string {
	t.Helper()
	auth := remote.WithAuth(&authn.Basic{Username: "pullgate", Password: token})
	empty := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(r, empty, auth); err != nil {
		t.Fatal(err)
	}
	emptyDigest, _ := empty.Digest()
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom+json",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2}],`+
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1}}`, emptyDigest, emptyDigest, subject)
	d, _, err := v1.SHA256(strings.NewReader(manifest))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r.Digest(d.String()), rawManifest(manifest), auth); err != nil {
		t.Fatal(err)
	}
	return d.String()
}

type rawManifest string

func (m rawManifest) RawManifest() ([]byte, error)        { return []byte(m), nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func containsRef(refs []corev1.LocalObjectReference, name string) bool {
	for _, r := range refs {
		if r.Name == name {
			return true
		}
	}
	return false
}

// `pullgate console` serves the kubeconfig's user; its URL logs in once, and the
// console is on loopback only.
func TestConsoleCommand(t *testing.T) {
	ctx := harness.Context(t, time.Minute)
	proc, err := harness.StartProcess("console: ", "console", "--kubeconfig", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Stop)
	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+/login\?token=[0-9a-f]+`).FindString(proc.Output())
	if url == "" {
		t.Fatalf("no URL printed:\n%s", proc.Output())
	}
	b := browser(t, ctx)
	if err := chromedp.Do(b, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("table"))); err != nil {
		t.Fatal(err)
	}
	// The same URL in another browser logs nobody in.
	other := browser(t, ctx)
	if err := chromedp.Do(other, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(other, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, "not valid, or was used already") {
		t.Errorf("the login URL used a second time: %q", body)
	}
	res, err := harness.Run(ctx, harness.RunOptions{}, "console", "--kubeconfig", env.Kubeconfig, "--listen", "0.0.0.0:0")
	if err != nil || res.ExitCode == 0 || !strings.Contains(res.Stderr, "not a loopback address") {
		t.Errorf("console --listen 0.0.0.0:0: %v exit %d %s", err, res.ExitCode, res.Stderr)
	}
}

// up's console after someone else used its login link (a curl, another browser):
// `pullgate console --url` prints a fresh link that logs this browser in, and the
// session the earlier link opened ends.
func TestUpsConsoleGivesAFreshLink(t *testing.T) {
	ctx := harness.Context(t, time.Minute)
	base := strings.Split(consoleURL(t), "/login")[0]
	freshLink := func() string {
		t.Helper()
		res, err := harness.Run(ctx, harness.RunOptions{}, "console", "--url", "--data-dir", env.DataDir)
		if err != nil || res.ExitCode != 0 || !strings.HasPrefix(res.Stdout, base+"/login?token=") {
			t.Fatalf("pullgate console --url: %v exit %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
		}
		return strings.TrimSpace(res.Stdout)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	link := freshLink()
	curl, err := noRedirect.Get(link)
	if err != nil || curl.StatusCode != http.StatusSeeOther {
		t.Fatalf("curl of a login link: %v %v", err, curl)
	}
	curl.Body.Close()
	if again, err := noRedirect.Get(link); err != nil || again.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a login link used twice: %v %v", err, again)
	}
	b := browser(t, ctx)
	if err := chromedp.Do(b, chromedp.Navigate(freshLink()), chromedp.WaitVisible(chromedp.CSS("table"))); err != nil {
		t.Fatalf("the fresh link: %v", err)
	}
	old, err := noRedirect.Do(withCookies(t, base+"/projects", curl.Cookies()))
	if err != nil || old.StatusCode != http.StatusUnauthorized {
		t.Errorf("curl's session after the fresh link was used: %v %v, want 401", err, old)
	}
}

func withCookies(t *testing.T, url string, cookies []*http.Cookie) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}
