package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/openshift/apiserver"
	"pullgate.dev/pullgate/internal/platform/pki"
)

var (
	projectsGVR        = schema.GroupVersionResource{Group: "project.openshift.io", Version: "v1", Resource: "projects"}
	projectRequestsGVR = schema.GroupVersionResource{Group: "project.openshift.io", Version: "v1", Resource: "projectrequests"}
)

// waitForOpenShiftAPIs waits until the aggregation layer serves pullgate's OpenShift
// APIs (the APIServices are Available).
func waitForOpenShiftAPIs(t *testing.T, ctx context.Context) {
	t.Helper()
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		out, err := env.Kubectl(ctx, "api-resources", "--api-group=project.openshift.io", "-o", "name")
		return err == nil && strings.Contains(out, "projectrequests.project.openshift.io")
	}) {
		t.Fatal("project.openshift.io is not served through the aggregation layer")
	}
}

// selfProvisioner binds ClusterRole self-provisioner to service account ns/sa until
// the test ends.
func selfProvisioner(t *testing.T, ctx context.Context, name, ns, sa string) {
	t.Helper()
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "self-provisioner"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}}}
	if _, err := env.Admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// The OpenShift APIs oc reaches for, served by pullgate behind the API server's
// aggregation layer: discovery sees them, RBAC decides them, a user sees only its own
// projects, and nobody but the API server may speak to pullgate's server.
func TestOpenShiftAPIs(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	out, err := env.Kubectl(ctx, "api-resources", "--api-group=authorization.openshift.io", "-o", "name")
	if err != nil || !strings.Contains(out, "localresourceaccessreviews.authorization.openshift.io") {
		t.Fatalf("authorization.openshift.io: %v\n%s", err, out)
	}

	home := createNamespace(t, ctx, "oshome")
	waitForServiceAccount(t, ctx, home, "default")
	token, err := env.Account(ctx, home, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := dynamic.NewForConfig(env.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	alicesUser := "system:serviceaccount:" + home + ":alice"
	name := "osreq-" + rand.String(5)
	request := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "project.openshift.io/v1", "kind": "ProjectRequest", "metadata": map[string]any{"name": name}}}

	t.Run("requesting a project needs self-provisioner", func(t *testing.T) {
		_, err := alice.Resource(projectRequestsGVR).Create(ctx, request, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("a user without self-provisioner: %v, want Forbidden", err)
		}
	})

	t.Run("a requested project is the requester's, and only its projects are listed", func(t *testing.T) {
		selfProvisioner(t, ctx, "self-provisioner-"+home, home, "alice")
		t.Cleanup(func() { _ = env.Admin.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		var created *unstructured.Unstructured
		// RBAC's authorizer in the API server sees the new binding a moment later.
		if !harness.Eventually(ctx, 20*time.Second, func(ctx context.Context) bool {
			created, err = alice.Resource(projectRequestsGVR).Create(ctx, request, metav1.CreateOptions{})
			return err == nil
		}) {
			t.Fatalf("project request: %v", err)
		}
		if created.GetKind() != "Project" || created.GetName() != name {
			t.Errorf("the request answered %s %s", created.GetKind(), created.GetName())
		}
		ns, err := env.Admin.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil || ns.Annotations["openshift.io/requester"] != alicesUser {
			t.Fatalf("namespace %s: %v %v", name, err, ns)
		}
		admin, err := env.Admin.RbacV1().RoleBindings(name).Get(ctx, "admin", metav1.GetOptions{})
		if err != nil || admin.RoleRef.Name != "admin" || len(admin.Subjects) != 1 || admin.Subjects[0].Name != "alice" {
			t.Fatalf("admin binding: %v %+v", err, admin)
		}
		var projects []string
		if !harness.Eventually(ctx, 20*time.Second, func(ctx context.Context) bool {
			list, err := alice.Resource(projectsGVR).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			projects = nil
			for _, p := range list.Items {
				projects = append(projects, p.GetName())
			}
			return slices.Contains(projects, name)
		}) {
			t.Fatalf("alice's projects: %v, want %s", projects, name)
		}
		for _, p := range projects {
			if p != name && p != home {
				t.Errorf("alice sees project %s, which she may not get", p)
			}
		}
		if _, err := alice.Resource(projectsGVR).Get(ctx, "kube-system", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("alice getting project kube-system: %v, want Forbidden", err)
		}
	})

	// A self-provisioner may not take a namespace the cluster's components reserve
	// (deploy/node/ makes a privileged one named pullgate-node), nor one that exists.
	t.Run("reserved and existing names are refused", func(t *testing.T) {
		selfProvisioner(t, ctx, "self-provisioner-reserved-"+home, home, "alice")
		// The API server's RBAC sees the binding a moment later.
		probe := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "project.openshift.io/v1", "kind": "ProjectRequest", "metadata": map[string]any{"name": "kube-probe"}}}
		if !harness.Eventually(ctx, 20*time.Second, func(ctx context.Context) bool {
			_, err := alice.Resource(projectRequestsGVR).Create(ctx, probe, metav1.CreateOptions{})
			return err != nil && !strings.Contains(err.Error(), "cannot create resource")
		}) {
			t.Fatal("alice never became a self-provisioner")
		}
		for name, want := range map[string]string{
			"kube-evil": `starting with "kube-"`, "openshift-config": `starting with "openshift-"`,
			"pullgate-node": `starting with "pullgate-"`, "default": `named "default"`, home: "already exists",
		} {
			req := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "project.openshift.io/v1", "kind": "ProjectRequest", "metadata": map[string]any{"name": name}}}
			_, err := alice.Resource(projectRequestsGVR).Create(ctx, req, metav1.CreateOptions{})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("requesting project %s: %v, want an error saying %q", name, err, want)
			}
			if name == home || name == "default" {
				continue
			}
			if _, err := env.Admin.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("namespace %s after a refused request: %v, want NotFound", name, err)
			}
		}
	})

	// The API server passes each group in a header value of its own; a comma is part
	// of the name. A user in the one group "devs,system:masters" is no master here.
	t.Run("a comma in a group name is not two groups", func(t *testing.T) {
		cfg := rest.CopyConfig(env.AdminConfig)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "mallory", Groups: []string{"devs,system:masters", "system:authenticated"}}
		mallory, err := dynamic.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		list, err := mallory.Resource(projectsGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			t.Errorf("mallory, in no project, lists project %s", p.GetName())
		}
		if _, err := mallory.Resource(projectsGVR).Get(ctx, "kube-system", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("mallory getting project kube-system: %v, want Forbidden", err)
		}
	})

	t.Run("who can pull: an access review", func(t *testing.T) {
		review := filepath.Join(t.TempDir(), "review.json") // (kubectl splits -f on commas: none in a subtest's name)
		if err := os.WriteFile(review, []byte(`{"kind":"LocalResourceAccessReview","apiVersion":"authorization.openshift.io/v1","verb":"get","resourceAPIGroup":"image.openshift.io","resource":"imagestreams/layers"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := env.Kubectl(ctx, "create", "--raw", "/apis/authorization.openshift.io/v1/namespaces/"+home+"/localresourceaccessreviews", "-f", review)
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Namespace string   `json:"namespace"`
			Groups    []string `json:"groups"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Namespace != home || !slices.Contains(resp.Groups, "system:serviceaccounts:"+home) {
			t.Errorf("review: %v %s", err, out)
		}
	})

	// An attacker on this machine who finds pullgate's OpenShift API port and sends
	// X-Remote-User: system:admin gets nothing: only the API server's front-proxy
	// client certificate is accepted.
	t.Run("forged user headers are refused", func(t *testing.T) {
		svc, err := env.Admin.CoreV1().Services(apiserver.ServiceNamespace).Get(ctx, apiserver.ServiceName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("https://%s:%d/apis/project.openshift.io/v1/projects", svc.Spec.ExternalName, svc.Spec.Ports[0].Port)
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("X-Remote-User", "system:admin")
		req.Header.Add("X-Remote-Group", "system:masters")
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the attacker's client
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a request without the front-proxy certificate was answered: %s", resp.Status)
		}
		// The same request with the API server's own client certificate is answered:
		// the refusal above was for the certificate, not for the address.
		cert, err := tls.LoadX509KeyPair(filepath.Join(env.DataDir, "pki", "front-proxy", "front-proxy-client.crt"), filepath.Join(env.DataDir, "pki", "front-proxy", "front-proxy-client.key"))
		if err != nil {
			t.Fatal(err)
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}} //nolint:gosec // only the client certificate matters here
		req, _ = http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err = client.Do(req)
		if err != nil {
			t.Fatalf("with the front-proxy certificate: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("with the front-proxy certificate: %s", resp.Status)
		}
	})
}

// The real oc, unmodified, against pullgate: new-project, policy who-can and registry
// info, which need OpenShift's own APIs. Set OC to an oc binary (see hack/ocgolden).
func TestRealOcOpenShiftCommands(t *testing.T) {
	oc := os.Getenv("OC")
	if oc == "" {
		t.Skip("OC is not set: give a real oc binary (see hack/ocgolden) to run oc new-project, policy who-can, registry info, get/describe is and istag, tag, import-image, new-app, adm prune images, delete project and login against pullgate")
	}
	ctx := harness.Context(t, 3*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	cli := newCLI(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, oc, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+cli.kubeconfig)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("oc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	project := "ocnew-" + rand.String(5)
	t.Cleanup(func() {
		_ = env.Admin.CoreV1().Namespaces().Delete(context.Background(), project, metav1.DeleteOptions{})
	})
	if out := run("new-project", project); !strings.HasPrefix(out, fmt.Sprintf("Now using project %q on server ", project)) {
		t.Errorf("oc new-project:\n%s", out)
	}
	waitForServiceAccount(t, ctx, project, "default")
	if out := run("get", "projects"); !strings.Contains(out, project) {
		t.Errorf("oc get projects does not list %s:\n%s", project, out)
	}
	if out := run("project", project); !strings.Contains(out, project) {
		t.Errorf("oc project %s:\n%s", project, out)
	}
	if out := run("policy", "who-can", "get", "imagestreams/layers", "-n", project); !strings.Contains(out, "system:serviceaccounts:"+project) {
		t.Errorf("oc policy who-can does not list the project's service accounts:\n%s", out)
	}
	pushImage(t, ctx, dockerConfigFor(t, ctx, project, "pusher", "admin"), env.RegistryHost+"/"+project+"/app:v1")
	if out := run("registry", "info", "-n", project); !strings.Contains(out, env.RegistryHost) {
		t.Errorf("oc registry info:\n%s", out)
	}
	if out := run("get", "is", "-n", project); !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "IMAGE REPOSITORY") || !strings.Contains(out, env.RegistryHost+"/"+project+"/app") {
		t.Errorf("oc get is (OpenShift's columns, no warning):\n%s", out)
	}
	if out := run("describe", "is", "app", "-n", project); !strings.Contains(out, "Image Repository:") || !strings.Contains(out, "v1") {
		t.Errorf("oc describe is (OpenShift's view):\n%s", out)
	}
	if out := run("get", "istag", "app:v1", "-n", project); !strings.Contains(out, "IMAGE REFERENCE") || !strings.Contains(out, env.RegistryHost+"/"+project+"/app@sha256:") {
		t.Errorf("oc get istag:\n%s", out)
	}
	// The image-stream workflow.
	if out := run("tag", "app:v1", "app:prod", "-n", project); !strings.HasPrefix(out, "Tag app:prod set to app@sha256:") {
		t.Errorf("oc tag:\n%s", out)
	}
	if out := run("describe", "istag", "app:prod", "-n", project); !strings.Contains(out, "Image Size:") || strings.Contains(out, "unable to read image metadata") {
		t.Errorf("oc describe istag (the image's metadata):\n%s", out)
	}
	if out := run("get", "isimage", "-n", project, "app@"+strings.TrimSpace(run("get", "istag", "app:prod", "-n", project, "-o", "jsonpath={.image.metadata.name}"))); !strings.Contains(out, "sha256:") {
		t.Errorf("oc get isimage:\n%s", out)
	}
	if out := run("import-image", "imp:v1", "--from="+env.RegistryHost+"/"+project+"/app:v1", "--confirm", "--scheduled", "-n", project); !strings.Contains(out, "imported") || !strings.Contains(out, "updates automatically from registry") {
		t.Errorf("oc import-image --scheduled:\n%s", out)
	}
	if out := run("create", "imagestream", "made", "-n", project); !strings.Contains(out, "imagestream.image.openshift.io/made created") {
		t.Errorf("oc create imagestream:\n%s", out)
	}
	if out := run("new-app", project+"/app:prod", "--name=web", "-n", project); !strings.Contains(out, `deployment.apps "web" created`) {
		t.Errorf("oc new-app from an image stream tag:\n%s", out)
	}
	if out := run("tag", "-d", "app:prod", "-n", project); !strings.Contains(out, "Deleted tag "+project+"/app:prod.") {
		t.Errorf("oc tag -d:\n%s", out)
	}
	lonely := createNamespace(t, ctx, "lonely")
	if out := run("registry", "info", "--public", "-n", lonely); !strings.Contains(out, env.RegistryHost) {
		t.Errorf("oc registry info --public in a project without streams:\n%s", out)
	}
	pruner, err := env.Account(ctx, lonely, "pruner", "")
	if err != nil {
		t.Fatal(err)
	}
	selfBinding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "pruner-" + lonely}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: lonely, Name: "pruner"}}}
	if _, err := env.Admin.RbacV1().ClusterRoleBindings().Create(ctx, selfBinding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), selfBinding.Name, metav1.DeleteOptions{})
	})
	prune := exec.CommandContext(ctx, oc, "adm", "prune", "images", "--confirm", "--keep-younger-than=0s", "--keep-tag-revisions=0")
	prune.Env = append(os.Environ(), "KUBECONFIG="+tokenCLI(t, "pruner", pruner).kubeconfig)
	if out, err := prune.CombinedOutput(); err == nil || !strings.Contains(string(out), "pullgate adm prune --confirm") {
		t.Errorf("oc adm prune images: %v\n%s", err, out)
	}
	if out := run("get", "istag", "app:v1", "-n", project); !strings.Contains(out, "app:v1") {
		t.Errorf("oc adm prune images took app:v1:\n%s", out)
	}

	if out := run("delete", "project", project); !strings.Contains(out, fmt.Sprintf("project.project.openshift.io %q deleted", project)) {
		t.Errorf("oc delete project:\n%s", out)
	}

	// oc login as a user with no project writes its kubeconfig and says what to do.
	home := createNamespace(t, ctx, "oclogin")
	waitForServiceAccount(t, ctx, home, "default")
	token, err := env.Account(ctx, home, "frank", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.TokenConfig(token)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	login := exec.CommandContext(ctx, oc, "login", "--token="+token, "--server="+cfg.Host, "--certificate-authority="+filepath.Join(env.DataDir, "pki", pki.CAFile))
	login.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if out, err := login.CombinedOutput(); err != nil || !strings.Contains(string(out), "You don't have any projects.") {
		t.Errorf("oc login as a user with no project: %v\n%s", err, out)
	}
	if _, err := os.Stat(kubeconfig); err != nil {
		t.Errorf("oc login wrote no kubeconfig: %v", err)
	}
}

// `pullgate new-project` as oc's: a user whose only right is self-provisioner makes
// a project with --display-name and --description through the ProjectRequest, is its
// admin, and has its kubeconfig switched to it; without self-provisioner it is
// refused and nothing is made.
func TestNewProjectAsSelfProvisioner(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	home := createNamespace(t, ctx, "nphome")
	waitForServiceAccount(t, ctx, home, "default")
	token, err := env.Account(ctx, home, "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	carol := tokenCLI(t, "carol", token)
	name := "np-" + rand.String(5)
	t.Cleanup(func() { _ = env.Admin.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	args := []string{"new-project", name, "--display-name=Team C", "--description=carol's project"}

	if res := carol.run(ctx, args...); res.ExitCode == 0 || !strings.Contains(res.Stderr, "forbidden") {
		t.Fatalf("new-project without self-provisioner: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if _, err := env.Admin.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace %s after a refused new-project: %v", name, err)
	}

	selfProvisioner(t, ctx, "self-provisioner-"+home, home, "carol")
	var res harness.Result
	// The API server's RBAC sees the binding a moment later.
	if !harness.Eventually(ctx, 20*time.Second, func(ctx context.Context) bool {
		res = carol.run(ctx, args...)
		return res.ExitCode == 0
	}) {
		t.Fatalf("new-project as a self-provisioner: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if want := fmt.Sprintf("Now using project %q on server %q.\n", name, env.TokenConfig(token).Host); res.Stdout != want {
		t.Errorf("new-project printed %q, want %q", res.Stdout, want)
	}
	ns, err := env.Admin.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := ns.Annotations; a["openshift.io/display-name"] != "Team C" || a["openshift.io/description"] != "carol's project" || a["openshift.io/requester"] != "system:serviceaccount:"+home+":carol" {
		t.Errorf("namespace annotations %v", a)
	}
	admin, err := env.Admin.RbacV1().RoleBindings(name).Get(ctx, "admin", metav1.GetOptions{})
	if err != nil || len(admin.Subjects) != 1 || admin.Subjects[0].Kind != rbacv1.ServiceAccountKind || admin.Subjects[0].Name != "carol" {
		t.Errorf("admin binding: %v %+v", err, admin)
	}
	written, err := clientcmd.LoadFromFile(carol.kubeconfig)
	if err != nil || written.Contexts[written.CurrentContext].Namespace != name {
		t.Errorf("kubeconfig not switched to %s: %v", name, err)
	}

	// oc whoami -t and --show-server, as oc prints them.
	if res := carol.run(ctx, "whoami", "-t"); res.ExitCode != 0 || res.Stdout != token+"\n" {
		t.Errorf("whoami -t: exit %d, printed the session's token: %v", res.ExitCode, res.Stdout == token+"\n")
	}
	if res := carol.run(ctx, "whoami", "--show-server"); res.Stdout != env.TokenConfig(token).Host+"\n" {
		t.Errorf("whoami --show-server: %q, want %q", res.Stdout, env.TokenConfig(token).Host)
	}

	// Her project's admin deletes it, as with oc delete project; her home, where she
	// is no admin, stays.
	carolConfig, err := clientcmd.BuildConfigFromFlags("", carol.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	projects, err := dynamic.NewForConfig(carolConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := projects.Resource(projectsGVR).Delete(ctx, home, metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("carol deleting %s, where she is no admin: %v, want forbidden", home, err)
	}
	if err := projects.Resource(projectsGVR).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("carol deleting her own project %s: %v", name, err)
	}
	if ns, err := env.Admin.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("namespace %s is not being deleted", name)
	}
	if _, err := env.Admin.CoreV1().Namespaces().Get(ctx, home, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace %s: %v", home, err)
	}
}

// oc login asks, for a user with no project, whether it may request one: an
// authorization.openshift.io SubjectAccessReview about itself, which any user may
// make; asking about another user is refused.
func TestLoginsSubjectAccessReview(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	home := createNamespace(t, ctx, "sar")
	waitForServiceAccount(t, ctx, home, "default")
	token, err := env.Account(ctx, home, "dave", "")
	if err != nil {
		t.Fatal(err)
	}
	dave, err := dynamic.NewForConfig(env.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	reviews := dave.Resource(schema.GroupVersionResource{Group: "authorization.openshift.io", Version: "v1", Resource: "subjectaccessreviews"})
	ask := func(fields map[string]any) (bool, error) {
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "authorization.openshift.io/v1", "kind": "SubjectAccessReview", "namespace": "", "verb": "create", "resource": "projectrequests"}}
		for k, v := range fields {
			obj.Object[k] = v
		}
		out, err := reviews.Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		allowed, _, _ := unstructured.NestedBool(out.Object, "allowed")
		return allowed, nil
	}
	if allowed, err := ask(nil); err != nil || allowed {
		t.Fatalf("dave, no self-provisioner, may request projects: %v %v", allowed, err)
	}
	selfProvisioner(t, ctx, "self-provisioner-"+home, home, "dave")
	if !harness.Eventually(ctx, 20*time.Second, func(context.Context) bool {
		allowed, err := ask(nil)
		return err == nil && allowed
	}) {
		t.Fatal("dave, a self-provisioner, is not told he may request projects")
	}
	if _, err := ask(map[string]any{"user": "system:admin"}); !apierrors.IsForbidden(err) {
		t.Errorf("dave asking about system:admin: %v, want forbidden", err)
	}
}

// kubectl get is and get istag (and oc's) are OpenShift's image streams and tags:
// their columns, one namespace or all, and no warning that the short name could mean
// another resource.
func TestGetImageStreamsTheOpenShiftWay(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	ns := createNamespace(t, ctx, "getis")
	token, err := env.Account(ctx, ns, "pusher", "system:image-builder")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.DockerConfig(t.TempDir(), token)
	if err != nil {
		t.Fatal(err)
	}
	digest := pushFile(t, ctx, cfg, env.RegistryHost+"/"+ns+"/app:v1", []byte("app v1"))
	for _, tc := range []struct {
		args   []string
		header []string
		row    []string
	}{
		{[]string{"get", "is", "-n", ns}, []string{"NAME", "IMAGE", "REPOSITORY", "TAGS", "UPDATED"}, []string{"app", env.RegistryHost + "/" + ns + "/app", "v1"}},
		{[]string{"get", "is", "-A"}, []string{"NAMESPACE", "NAME", "IMAGE", "REPOSITORY", "TAGS", "UPDATED"}, []string{ns, "app", env.RegistryHost + "/" + ns + "/app", "v1"}},
		{[]string{"get", "istag", "-n", ns}, []string{"NAME", "IMAGE", "REFERENCE", "UPDATED"}, []string{"app:v1", env.RegistryHost + "/" + ns + "/app@" + digest}},
		{[]string{"get", "istag", "app:v1", "-n", ns, "-o", "wide"}, []string{"NAME", "IMAGE", "REFERENCE", "UPDATED", "IMAGE", "NAME"}, []string{"app:v1", env.RegistryHost + "/" + ns + "/app@" + digest}},
	} {
		out, err := env.Kubectl(ctx, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !slices.Equal(strings.Fields(lines[0]), tc.header) {
			t.Errorf("kubectl %s: first line %q, want the header %v (a warning?)\n%s", strings.Join(tc.args, " "), lines[0], tc.header, out)
		}
		found := false
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			found = found || (len(f) > len(tc.row) && slices.Equal(f[:len(tc.row)], tc.row) && strings.Contains(l, " ago"))
		}
		if !found {
			t.Errorf("kubectl %s does not list %v, updated … ago:\n%s", strings.Join(tc.args, " "), tc.row, out)
		}
	}
}

// pullgate adm policy does what oc adm policy does for a project's role bindings:
// the same commands as pullgate policy.
func TestAdmPolicyAddsAndRemovesRoles(t *testing.T) {
	ctx := harness.Context(t, time.Minute)
	cli := newCLI(t)
	ns := createNamespace(t, ctx, "admpolicy")
	cli.ok(ctx, "clusterrole.rbac.authorization.k8s.io/view added: \"alice\"\n", "adm", "policy", "add-role-to-user", "view", "alice", "-n", ns)
	b, err := env.Admin.RbacV1().RoleBindings(ns).Get(ctx, "view", metav1.GetOptions{})
	if err != nil || len(b.Subjects) != 1 || b.Subjects[0].Name != "alice" {
		t.Fatalf("binding view: %v %+v", err, b)
	}
	cli.ok(ctx, "clusterrole.rbac.authorization.k8s.io/view removed: \"alice\"\n", "adm", "policy", "remove-role-from-user", "view", "alice", "-n", ns)
	if _, err := env.Admin.RbacV1().RoleBindings(ns).Get(ctx, "view", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("binding view after removing its only subject: %v", err)
	}
}
