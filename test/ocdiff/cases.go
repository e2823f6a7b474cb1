// Package ocdiff holds pullgate's oc-compatible commands to the real oc: the same
// command runs, each in a fresh namespace set up the same way, recorded once from an
// oc binary (hack/ocgolden writes testdata/oc-golden.json) and compared in `make test`
// with what pullgate prints, exits with and leaves in the API.
package ocdiff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	imagev1 "github.com/openshift/api/image/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Golden is what oc did.
type Golden struct {
	// OC is `oc version --client` of the binary recorded.
	OC    string   `json:"oc"`
	Cases []Result `json:"cases"`
}

// Result is one case's outcome, normalised: namespaces and paths by placeholders,
// server-set metadata dropped.
type Result struct {
	Name     string `json:"name"`
	Command  string `json:"command"`
	ExitCode int    `json:"exitCode"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// Objects are the namespace's role bindings, its default service account's
	// secrets, and its secrets' names and types, after the case.
	Objects string `json:"objects"`
}

// Case is one command run in a fresh namespace NS (with a second one, NS-a, for a
// service account of another project), after Setup.
type Case struct {
	Name string
	// Setup runs before, with the administrator's client (the same for both).
	Setup []string
	Args  []string
}

// Setup steps, run as commands of the tool under test where they are seed commands,
// else with client-go.
const (
	setupViewBindingR1    = "rolebinding r1: ClusterRole view, user u1"
	setupRoleBindingRrole = "rolebinding rrole: Role reader, user u1"
	setupPullerBindings   = "rolebindings of system:image-puller: -0 holding u1, -1 holding u2"
	setupPullSecret       = "secret pull (kubernetes.io/dockerconfigjson)"
	setupPullLinked       = "secret pull linked for pull"
	setupPushedApp        = "image NS-a/app:v1 pushed"
	setupPushedHere       = "image NS/app:v1 pushed"
	setupTaggedProd       = "NS/app:prod tagged from NS-a/app:v1"
	setupClusterView      = "clusterrolebinding NS-view: ClusterRole view, user NS-user"
)

// Cases are the seed's commands and the variants where pullgate once differed from oc.
var Cases = []Case{
	{Name: "add a service account of another project", Args: []string{"policy", "add-role-to-user", "system:image-puller", "system:serviceaccount:NS-a:default", "-n", "NS"}},
	{Name: "add a group", Args: []string{"policy", "add-role-to-group", "system:image-puller", "system:serviceaccounts:NS-a", "-n", "NS"}},
	{Name: "add the same subject twice reuses the binding", Setup: []string{setupPullerBindings}, Args: []string{"policy", "add-role-to-user", "system:image-puller", "u1", "-n", "NS"}},
	{Name: "a new subject makes the next binding", Setup: []string{setupPullerBindings}, Args: []string{"policy", "add-role-to-user", "system:image-puller", "u3", "-n", "NS"}},
	{Name: "two users at once", Args: []string{"policy", "add-role-to-user", "view", "u1", "u2", "-n", "NS"}},
	{Name: "rolebinding-name creates", Args: []string{"policy", "add-role-to-user", "view", "u1", "--rolebinding-name", "r1", "-n", "NS"}},
	{Name: "rolebinding-name reuses", Setup: []string{setupViewBindingR1}, Args: []string{"policy", "add-role-to-user", "view", "u2", "--rolebinding-name", "r1", "-n", "NS"}},
	{Name: "rolebinding-name of another role", Setup: []string{setupViewBindingR1}, Args: []string{"policy", "add-role-to-user", "edit", "u2", "--rolebinding-name", "r1", "-n", "NS"}},
	{Name: "rolebinding-name of a Role", Setup: []string{setupRoleBindingRrole}, Args: []string{"policy", "add-role-to-user", "reader", "u2", "--rolebinding-name", "rrole", "-n", "NS"}},
	{Name: "role-namespace of the binding's namespace", Args: []string{"policy", "add-role-to-user", "reader", "u2", "--role-namespace", "NS", "-n", "NS"}},
	{Name: "role-namespace of another namespace", Args: []string{"policy", "add-role-to-user", "reader", "u2", "--role-namespace", "NS-a", "-n", "NS"}},
	{Name: "dry run, client", Args: []string{"policy", "add-role-to-user", "edit", "u1", "--dry-run=client", "-n", "NS"}},
	{Name: "dry run, server", Args: []string{"policy", "add-role-to-user", "edit", "u1", "--dry-run=server", "-n", "NS"}},
	{Name: "output name", Args: []string{"policy", "add-role-to-user", "edit", "u1", "-o", "name", "-n", "NS"}},
	{Name: "output yaml", Args: []string{"policy", "add-role-to-user", "edit", "u1", "-o", "yaml", "-n", "NS"}},
	{Name: "output yaml, dry run", Args: []string{"policy", "add-role-to-user", "edit", "u1", "-o", "yaml", "--dry-run=client", "-n", "NS"}},
	{Name: "-z with a full service account name", Args: []string{"policy", "add-role-to-user", "system:image-puller", "-z", "system:serviceaccount:NS-a:default", "-n", "NS"}},
	{Name: "-z of a missing service account", Args: []string{"policy", "add-role-to-user", "system:image-puller", "-z", "ghost", "-n", "NS"}},
	{Name: "a missing role", Args: []string{"policy", "add-role-to-user", "no-such-role", "u1", "-n", "NS"}},
	{Name: "no user", Args: []string{"policy", "add-role-to-user", "view", "-n", "NS"}},
	{Name: "remove", Setup: []string{setupPullerBindings}, Args: []string{"policy", "remove-role-from-user", "system:image-puller", "u1", "-n", "NS"}},
	{Name: "remove, output yaml", Setup: []string{setupPullerBindings}, Args: []string{"policy", "remove-role-from-user", "system:image-puller", "u2", "-o", "yaml", "-n", "NS"}},
	{Name: "remove, dry run", Setup: []string{setupPullerBindings}, Args: []string{"policy", "remove-role-from-user", "system:image-puller", "u1", "--dry-run=client", "-n", "NS"}},
	{Name: "remove a subject no binding holds", Setup: []string{setupPullerBindings}, Args: []string{"policy", "remove-role-from-user", "system:image-puller", "nobody", "-n", "NS"}},
	{Name: "remove a role with no binding", Args: []string{"policy", "remove-role-from-user", "no-bindings", "u1", "-n", "NS"}},
	{Name: "remove with a binding of another role", Setup: []string{setupViewBindingR1}, Args: []string{"policy", "remove-role-from-user", "system:image-puller", "u1", "--rolebinding-name", "r1", "-n", "NS"}},
	{Name: "remove a group", Args: []string{"policy", "remove-role-from-group", "system:image-puller", "system:serviceaccounts:NS", "-n", "NS"}},
	{Name: "create secret generic", Args: []string{"create", "secret", "generic", "pull", "--from-file=.dockerconfigjson=CONFIG", "--type=kubernetes.io/dockerconfigjson", "-n", "NS"}},
	{Name: "create secret docker-registry", Args: []string{"create", "secret", "docker-registry", "reg", "--docker-server=quay.io", "--docker-username=developer", "--docker-password=s3cret", "--docker-email=developer@example.com", "-n", "NS"}},
	{Name: "link for pull", Setup: []string{setupPullSecret}, Args: []string{"secrets", "link", "default", "pull", "--for=pull", "-n", "NS"}},
	{Name: "link secret/NAME, --for=PULL", Setup: []string{setupPullSecret}, Args: []string{"secrets", "link", "default", "secret/pull", "--for=PULL", "-n", "NS"}},
	{Name: "link for pull and mount", Setup: []string{setupPullSecret}, Args: []string{"secrets", "link", "default", "pull", "--for=pull,mount", "-n", "NS"}},
	{Name: "link only missing secrets", Args: []string{"secrets", "link", "default", "missing1", "missing2", "--for=pull", "-n", "NS"}},
	{Name: "link a linked secret and a missing one", Setup: []string{setupPullSecret, setupPullLinked}, Args: []string{"secrets", "link", "default", "pull", "missing", "--for=pull", "-n", "NS"}},
	{Name: "link to a missing service account", Setup: []string{setupPullSecret}, Args: []string{"secrets", "link", "ghost", "pull", "--for=pull", "-n", "NS"}},
	{Name: "link a configmap", Args: []string{"secrets", "link", "default", "configmap/pull", "--for=pull", "-n", "NS"}},
	{Name: "unlink", Setup: []string{setupPullSecret, setupPullLinked}, Args: []string{"secrets", "unlink", "default", "pull", "-n", "NS"}},
	{Name: "unlink, output yaml", Setup: []string{setupPullSecret, setupPullLinked}, Args: []string{"secrets", "unlink", "default", "pull", "-o", "jsonpath={.imagePullSecrets}", "-n", "NS"}},
	{Name: "unlink a secret not linked", Setup: []string{setupPullSecret}, Args: []string{"secrets", "unlink", "default", "pull", "-n", "NS"}},
	{Name: "an unknown policy subcommand", Args: []string{"policy", "no-such-command", "-n", "NS"}},
	{Name: "an unknown secrets subcommand", Args: []string{"secrets", "no-such-command", "-n", "NS"}},
	{Name: "adm policy add-role-to-user", Args: []string{"adm", "policy", "add-role-to-user", "view", "u1", "-n", "NS"}},
	{Name: "whoami -t with a client certificate", Args: []string{"whoami", "-t"}},
	{Name: "whoami --show-server", Args: []string{"whoami", "--show-server"}},
	{Name: "tag an image of another project", Setup: []string{setupPushedApp}, Args: []string{"tag", "NS-a/app:v1", "app:prod", "-n", "NS"}},
	{Name: "tag within the project", Setup: []string{setupPushedHere}, Args: []string{"tag", "app:v1", "app:prod", "-n", "NS"}},
	{Name: "tag --alias within a stream", Setup: []string{setupPushedHere}, Args: []string{"tag", "--alias", "app:v1", "app:latest", "-n", "NS"}},
	{Name: "tag --alias across projects", Setup: []string{setupPushedApp}, Args: []string{"tag", "--alias", "NS-a/app:v1", "app:prod", "-n", "NS"}},
	{Name: "tag from a tag with no image", Setup: []string{setupPushedApp}, Args: []string{"tag", "NS-a/app:v9", "app:prod", "-n", "NS"}},
	{Name: "delete a tag", Setup: []string{setupPushedApp, setupTaggedProd}, Args: []string{"tag", "-d", "app:prod", "-n", "NS"}},
	{Name: "delete a tag that is not there", Args: []string{"tag", "-d", "app:nope", "-n", "NS"}},
	{Name: "adm policy add-cluster-role-to-user", Args: []string{"adm", "policy", "add-cluster-role-to-user", "view", "NS-user"}},
	{Name: "adm policy add-cluster-role-to-group", Args: []string{"adm", "policy", "add-cluster-role-to-group", "view", "NS-group"}},
	{Name: "adm policy remove-cluster-role-from-user", Setup: []string{setupClusterView}, Args: []string{"adm", "policy", "remove-cluster-role-from-user", "view", "NS-user"}},
	{Name: "adm policy remove-cluster-role-from-user not bound", Args: []string{"adm", "policy", "remove-cluster-role-from-user", "view", "NS-user"}},
	{Name: "import-image of a missing stream without --confirm", Args: []string{"import-image", "imp:v1", "--from=quay.io/org/app:v1", "-n", "NS"}},
}

// Runner runs cases with one binary (oc or pullgate) against one cluster.
type Runner struct {
	Binary     string
	Kubeconfig string
	Admin      kubernetes.Interface
	Dynamic    dynamic.Interface
	// Push pushes a one-layer image to the integrated registry (ns/name:tag).
	Push func(ctx context.Context, image string) error
	// Prefix makes this run's namespace names unique.
	Prefix string
	// Dir holds the files the cases read (CONFIG).
	Dir string
}

// Run runs every case and returns the normalised results.
func (r *Runner) Run(ctx context.Context) ([]Result, error) {
	config := filepath.Join(r.Dir, "config.json")
	data, err := credentials.SetAuth(nil, "quay.io", credentials.Credential{Username: "developer", Password: "s3cret"}, credentials.Docker)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(config, data, 0o600); err != nil {
		return nil, err
	}
	var out []Result
	for i, c := range Cases {
		ns := fmt.Sprintf("%s-%d", r.Prefix, i)
		res, err := r.run(ctx, c, ns, config)
		if err != nil {
			return nil, fmt.Errorf("case %q: %w", c.Name, err)
		}
		out = append(out, res)
	}
	return out, nil
}

func (r *Runner) run(ctx context.Context, c Case, ns, config string) (Result, error) {
	for _, n := range []string{ns, ns + "-a"} {
		if _, err := r.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			return Result{}, err
		}
		if err := waitForDefaultAccount(ctx, r.Admin, n); err != nil {
			return Result{}, err
		}
	}
	for _, step := range c.Setup {
		if err := r.setup(ctx, step, ns); err != nil {
			return Result{}, fmt.Errorf("setup %q: %w", step, err)
		}
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		a = strings.ReplaceAll(a, "NS-a", ns+"-a")
		a = strings.ReplaceAll(a, "NS", ns)
		args[i] = strings.ReplaceAll(a, "CONFIG", config)
	}
	cmd := exec.CommandContext(ctx, r.Binary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+r.Kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Name: c.Name, Command: "oc " + strings.Join(c.Args, " ")}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		return Result{}, err
	}
	server := ""
	if cfg, err := clientcmd.BuildConfigFromFlags("", r.Kubeconfig); err == nil {
		server = cfg.Host
	}
	// The cluster's URL differs per run; a usage hint names the command as invoked
	// ("See 'oc policy -h'").
	norm := strings.NewReplacer(ns+"-a", "NS-a", ns, "NS", config, "CONFIG", r.Binary, "BINARY", server, "SERVER",
		"See '"+filepath.Base(r.Binary)+" ", "See 'CLI ")
	res.Stdout, res.Stderr = normaliseYAML(norm.Replace(stdout.String())), norm.Replace(stderr.String())
	res.Stdout, res.Stderr = digests.ReplaceAllString(res.Stdout, "sha256:DIGEST"), digests.ReplaceAllString(res.Stderr, "sha256:DIGEST")
	objects, err := r.objects(ctx, ns)
	if err != nil {
		return Result{}, err
	}
	res.Objects = norm.Replace(objects)
	return res, nil
}

func waitForDefaultAccount(ctx context.Context, client kubernetes.Interface, ns string) error {
	w, err := client.CoreV1().ServiceAccounts(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=default"})
	if err != nil {
		return err
	}
	defer w.Stop()
	if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
		return nil
	}
	for range w.ResultChan() {
		return nil
	}
	return ctx.Err()
}

func (r *Runner) setup(ctx context.Context, step, ns string) error {
	rbac := r.Admin.RbacV1()
	user := func(n string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: n}
	}
	switch step {
	case setupViewBindingR1:
		_, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "r1"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}, Subjects: []rbacv1.Subject{user("u1")}}, metav1.CreateOptions{})
		return err
	case setupRoleBindingRrole:
		if _, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
			Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "rrole"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reader"}, Subjects: []rbacv1.Subject{user("u1")}}, metav1.CreateOptions{})
		return err
	case setupPullerBindings:
		for i, u := range []string{"u1", "u2"} {
			if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("system:image-puller-%d", i)},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"}, Subjects: []rbacv1.Subject{user(u)}}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		return nil
	case setupPullSecret:
		data, err := credentials.SetAuth(nil, "quay.io", credentials.Credential{Username: "developer", Password: "s3cret"}, credentials.Docker)
		if err != nil {
			return err
		}
		_, err = r.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pull"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}, metav1.CreateOptions{})
		return err
	case setupClusterView:
		_, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-view"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}, Subjects: []rbacv1.Subject{user(ns + "-user")}}, metav1.CreateOptions{})
		return err
	case setupPushedApp:
		return r.Push(ctx, ns+"-a/app:v1")
	case setupPushedHere:
		return r.Push(ctx, ns+"/app:v1")
	case setupTaggedProd:
		ist := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag", "metadata": map[string]any{"name": "app:prod"},
			"tag": map[string]any{"name": "prod", "from": map[string]any{"kind": "ImageStreamTag", "namespace": ns + "-a", "name": "app:v1"}}}}
		_, err := r.Dynamic.Resource(imageStreamTags).Namespace(ns).Create(ctx, ist, metav1.CreateOptions{})
		return err
	case setupPullLinked:
		// pullgate's controller links the account's own pull secret meanwhile.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			sa, err := r.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			if err != nil {
				return err
			}
			sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: "pull"})
			_, err = r.Admin.CoreV1().ServiceAccounts(ns).Update(ctx, sa, metav1.UpdateOptions{})
			return err
		})
		return err
	}
	return fmt.Errorf("unknown setup step")
}

// objects are what a case may change, as YAML without server-set fields: role
// bindings (name, role, subjects), the default account's secret references (without
// those pullgate's controllers add), and secrets (name, type, data keys).
func (r *Runner) objects(ctx context.Context, ns string) (string, error) {
	type binding struct {
		Name     string           `json:"name"`
		RoleRef  rbacv1.RoleRef   `json:"roleRef"`
		Subjects []rbacv1.Subject `json:"subjects"`
	}
	type secret struct {
		Name string            `json:"name"`
		Type corev1.SecretType `json:"type"`
		Keys []string          `json:"keys"`
	}
	var state struct {
		RoleBindings     []binding `json:"roleBindings"`
		ImagePullSecrets []string  `json:"imagePullSecrets"`
		MountSecrets     []string  `json:"mountSecrets"`
		Secrets          []secret  `json:"secrets"`
		ImageStreams     []stream  `json:"imageStreams,omitempty"`
		// ClusterRoles are the cluster roles bound to this case's users and groups
		// (named after its namespace), by kind and name: binding names depend on what
		// earlier runs left in the cluster.
		ClusterRoles []string `json:"clusterRoles,omitempty"`
	}
	rbs, err := r.Admin.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, b := range rbs.Items {
		if b.Name == "system:image-pullers" || b.Name == "system:image-builders" || b.Name == "system:deployers" {
			continue // pullgate's (and OpenShift's) defaults, not the command's
		}
		state.RoleBindings = append(state.RoleBindings, binding{b.Name, b.RoleRef, b.Subjects})
	}
	sa, err := r.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	for _, s := range sa.ImagePullSecrets {
		if !strings.HasSuffix(s.Name, "-dockercfg") {
			state.ImagePullSecrets = append(state.ImagePullSecrets, s.Name)
		}
	}
	for _, s := range sa.Secrets {
		if !strings.HasSuffix(s.Name, "-dockercfg") {
			state.MountSecrets = append(state.MountSecrets, s.Name)
		}
	}
	secrets, err := r.Admin.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, s := range secrets.Items {
		if s.Type == corev1.SecretTypeDockercfg && strings.HasSuffix(s.Name, "-dockercfg") {
			continue // the controllers' own
		}
		var keys []string
		for k := range s.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		state.Secrets = append(state.Secrets, secret{s.Name, s.Type, keys})
	}
	if state.ImageStreams, err = r.imageStreams(ctx, ns); err != nil {
		return "", err
	}
	crbs, err := r.Admin.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, b := range crbs.Items {
		for _, sub := range b.Subjects {
			if strings.HasPrefix(sub.Name, ns+"-") {
				state.ClusterRoles = append(state.ClusterRoles, b.RoleRef.Name+" "+sub.Kind+" "+sub.Name)
			}
		}
	}
	sort.Strings(state.ClusterRoles)
	out, err := yaml.Marshal(state)
	return digests.ReplaceAllString(string(out), "sha256:DIGEST"), err
}

// stream is an image stream as a case may change it: its spec tags' sources and
// the images its tags point at.
type stream struct {
	Name     string            `json:"name"`
	SpecTags map[string]string `json:"specTags,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
}

var imageStreams = schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreams"}
var imageStreamTags = schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreamtags"}

// digests are image digests, which differ between runs.
var digests = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

func (r *Runner) imageStreams(ctx context.Context, ns string) ([]stream, error) {
	list, err := r.Dynamic.Resource(imageStreams).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []stream
	for _, u := range list.Items {
		var is imagev1.ImageStream
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is); err != nil {
			return nil, err
		}
		st := stream{Name: is.Name}
		for _, t := range is.Spec.Tags {
			if t.From != nil {
				st.SpecTags = setKey(st.SpecTags, t.Name, t.From.Kind+" "+t.From.Namespace+"/"+t.From.Name)
			}
		}
		for _, t := range is.Status.Tags {
			if len(t.Items) > 0 {
				st.Tags = setKey(st.Tags, t.Tag, t.Items[0].Image)
			}
		}
		out = append(out, st)
	}
	return out, nil
}

func setKey(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// normaliseYAML drops the fields a server sets from YAML printed by a command.
func normaliseYAML(s string) string {
	var lines []string
	skip := -1
	for _, line := range strings.Split(s, "\n") {
		indent := len(line) - len(strings.TrimLeft(line, " "))
		trimmed := strings.TrimSpace(line)
		if skip >= 0 {
			if indent > skip || strings.HasPrefix(trimmed, "- ") && indent == skip {
				continue
			}
			skip = -1
		}
		switch {
		case strings.HasPrefix(trimmed, "managedFields:"):
			skip = indent
			continue
		case strings.HasPrefix(trimmed, "uid:"), strings.HasPrefix(trimmed, "resourceVersion:"), strings.HasPrefix(trimmed, "creationTimestamp:") && trimmed != "creationTimestamp: null":
			continue
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// NewRunner is a Runner for binary against env's cluster.
func NewRunner(env *harness.Env, binary, prefix, dir string) (*Runner, error) {
	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	if err != nil {
		return nil, err
	}
	push := func(ctx context.Context, image string) error {
		ns, _, _ := strings.Cut(image, "/")
		token, err := env.Account(ctx, ns, "pusher", "system:image-builder")
		if err != nil {
			return err
		}
		config, err := env.DockerConfig(dir, token)
		if err != nil {
			return err
		}
		// The registry's informers see the new binding a moment later.
		harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
			_, err = harness.PushFile(ctx, config, env.RegistryHost+"/"+image, []byte("ocdiff"))
			return err == nil
		})
		return err
	}
	return &Runner{Binary: binary, Kubeconfig: env.Kubeconfig, Admin: env.Admin, Dynamic: dyn, Push: push, Prefix: prefix, Dir: dir}, nil
}
