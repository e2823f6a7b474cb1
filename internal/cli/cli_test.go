package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"pullgate.dev/pullgate/internal/registryinfo"
	"pullgate.dev/pullgate/pkg/credentials"
)

func ns(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func streams() (genericiooptions.IOStreams, *bytes.Buffer, *bytes.Buffer) {
	out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
	return genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut}, out, errOut
}

// roleRun runs one policy add/remove command as Complete would have filled it in.
func roleRun(t *testing.T, client *fake.Clientset, add bool, role string, names []string, sas []string, mods ...func(*RoleOptions)) (string, string, error) {
	t.Helper()
	s, out, errOut := streams()
	o := newRoleOptions(s, add, false)
	o.RoleName, o.Names, o.ServiceAccounts, o.Namespace, o.Client = role, names, sas, "b", client
	for _, n := range names {
		o.Subjects = append(o.Subjects, subjectFor(n, false))
	}
	for _, sa := range sas {
		o.Subjects = append(o.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: "b"})
	}
	for _, m := range mods {
		m(o)
	}
	if err := o.Validate(); err != nil {
		return "", "", err
	}
	err := o.Run(context.Background())
	return out.String(), errOut.String(), err
}

func bindingNames(t *testing.T, client *fake.Clientset) []string {
	t.Helper()
	list, err := client.RbacV1().RoleBindings("b").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range list.Items {
		names = append(names, b.Name)
	}
	slices.Sort(names)
	return names
}

// oc's naming and reuse of role bindings, its messages, its warnings, dry runs, and
// removal that deletes a binding left empty.
func TestPolicyRoleCommands(t *testing.T) {
	puller := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:image-puller"}}
	client := fake.NewClientset(ns("b"), puller, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "default"}})
	sa := "system:serviceaccount:a:default"

	out, errOut, err := roleRun(t, client, true, "system:image-puller", []string{sa}, nil)
	if err != nil || out != "clusterrole.rbac.authorization.k8s.io/system:image-puller added: \"system:serviceaccount:a:default\"\n" || errOut != "" {
		t.Fatalf("add: %q %q %v", out, errOut, err)
	}
	b, _ := client.RbacV1().RoleBindings("b").Get(context.Background(), "system:image-puller", metav1.GetOptions{})
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.ServiceAccountKind || b.Subjects[0].Namespace != "a" {
		t.Errorf("subjects %+v", b.Subjects)
	}
	// Again: the binding that holds it is reused.
	if _, _, err := roleRun(t, client, true, "system:image-puller", []string{sa}, nil); err != nil {
		t.Fatal(err)
	}
	// Another user: a new binding, named -0.
	if _, _, err := roleRun(t, client, true, "system:image-puller", []string{"alice"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := bindingNames(t, client); !slices.Equal(got, []string{"system:image-puller", "system:image-puller-0"}) {
		t.Errorf("bindings %v", got)
	}
	// A dry run writes nothing and says so.
	writes := len(client.Actions())
	out, _, err = roleRun(t, client, true, "system:image-puller", []string{"bob"}, nil, func(o *RoleOptions) { o.DryRun = cmdutil.DryRunClient })
	if err != nil || !strings.HasSuffix(out, "(dry run)\n") {
		t.Errorf("dry run: %q %v", out, err)
	}
	for _, a := range client.Actions()[writes:] {
		if a.GetVerb() == "create" || a.GetVerb() == "update" {
			t.Errorf("a dry run wrote: %s", a.GetVerb())
		}
	}
	// Missing role and service account: warnings, and the binding all the same.
	_, errOut, err = roleRun(t, client, true, "no-such-role", nil, []string{"ghost"})
	if err != nil || errOut != "Warning: role 'no-such-role' not found\nWarning: ServiceAccount 'ghost' not found\n" {
		t.Errorf("warnings: %q %v", errOut, err)
	}
	// Removal: the binding left empty is deleted.
	out, _, err = roleRun(t, client, false, "system:image-puller", []string{"alice"}, nil)
	if err != nil || !strings.Contains(out, "removed") {
		t.Errorf("remove: %q %v", out, err)
	}
	if got := bindingNames(t, client); slices.Contains(got, "system:image-puller-0") {
		t.Errorf("the emptied binding is still there: %v", got)
	}
	if _, _, err := roleRun(t, client, false, "system:image-puller", []string{"nobody"}, nil); err == nil {
		t.Error("removing a subject no binding holds succeeded")
	}
	// A Role from another namespace cannot be bound.
	if _, _, err := roleRun(t, client, true, "r", []string{"u"}, nil, func(o *RoleOptions) { o.RoleNamespace = "other" }); err == nil {
		t.Error("--role-namespace of another namespace was accepted")
	}
}

// oc's reading of user names.
func TestSubjectFor(t *testing.T) {
	for name, want := range map[string]rbacv1.Subject{
		"system:serviceaccount:a:default": {Kind: rbacv1.ServiceAccountKind, Namespace: "a", Name: "default"},
		"alice":                           {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"},
		"system:serviceaccount:a":         {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccount:a"},
		"system:serviceaccount:a:b:c":     {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccount:a:b:c"},
	} {
		if got := subjectFor(name, false); got != want {
			t.Errorf("subjectFor(%q) = %+v, want %+v", name, got, want)
		}
	}
}

// secrets link: --for=pull puts the secret on imagePullSecrets, mount on secrets,
// never twice; missing secrets are named and skipped; unlink removes and prints the
// account — all with oc's messages.
func TestSecretsLinkAndUnlink(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "default"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "pull"}})
	run := func(link bool, forWhat []string, secrets ...string) (string, string, error) {
		s, out, errOut := streams()
		o := newLinkOptions(s, link)
		o.ServiceAccount, o.Secrets, o.For, o.Namespace, o.Client = "default", secrets, forWhat, "b", client
		err := o.Validate()
		if err == nil {
			err = o.Run(ctx)
		}
		return out.String(), errOut.String(), err
	}
	if _, errOut, err := run(true, []string{"PULL"}, "secret/pull", "missing"); err != nil || errOut != "secret \"missing\" not found\n" {
		t.Fatalf("link: %q %v", errOut, err)
	}
	// Linked already, one missing: oc's error.
	if _, _, err := run(true, []string{"pull"}, "pull", "missing"); err == nil || err.Error() != "Some secrets could not be linked" {
		t.Fatalf("link again: %v", err)
	}
	sa, _ := client.CoreV1().ServiceAccounts("b").Get(ctx, "default", metav1.GetOptions{})
	if len(sa.ImagePullSecrets) != 1 || sa.ImagePullSecrets[0].Name != "pull" || len(sa.Secrets) != 0 {
		t.Errorf("after link --for=pull twice: %+v %+v", sa.ImagePullSecrets, sa.Secrets)
	}
	if _, _, err := run(true, []string{"pull"}, "missing"); err == nil || err.Error() != "No valid secrets found" {
		t.Errorf("linking only missing secrets: %v", err)
	}
	if _, _, err := run(true, []string{"pull"}, "configmap/pull"); err == nil || err.Error() != `expected resource of type secret, got "configmap/pull"` {
		t.Errorf("configmap/pull: %v", err)
	}
	out, _, err := run(false, nil, "pull")
	if err != nil || out != "serviceaccount/default updated\n" {
		t.Fatalf("unlink: %q %v", out, err)
	}
	sa, _ = client.CoreV1().ServiceAccounts("b").Get(ctx, "default", metav1.GetOptions{})
	if len(sa.ImagePullSecrets) != 0 {
		t.Errorf("after unlink: %+v", sa.ImagePullSecrets)
	}
	if _, _, err := run(false, nil, "pull"); err == nil || err.Error() != "No valid secrets found or secrets not linked to service account" {
		t.Errorf("unlink again: %v", err)
	}
}

// who-can lists the subjects RBAC lets do it, from the bindings in the namespace and
// the cluster.
func TestWhoCan(t *testing.T) {
	client := fake.NewClientset(
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:image-puller"},
			Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "pullers"},
			RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "system:image-puller"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, Name: "system:serviceaccounts:b"},
				{Kind: rbacv1.ServiceAccountKind, Namespace: "a", Name: "default"}}},
	)
	s, out, _ := streams()
	o := &WhoCanOptions{IOStreams: s, Verb: "get", Namespace: "b", Client: client, Subresource: "layers"}
	o.Resource.Group, o.Resource.Resource = "image.pullgate.dev", "imagestreams"
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "Namespace: b\nVerb:      get\nResource:  imagestreams.image.pullgate.dev/layers\n\nUsers:  system:serviceaccount:a:default\nGroups: system:serviceaccounts:b\n"
	if out.String() != want {
		t.Errorf("who-can:\n%s\nwant:\n%s", out, want)
	}
}

// registry login writes a credential for every name of the registry, as the service
// account with -z, keeping what the file held.
func TestRegistryLogin(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "builder"}})
	if err := registryinfo.Publish(ctx, client, registryinfo.Info{URL: "http://localhost:5000", Hostnames: []string{"localhost:5000", "127.0.0.1:5000"}}); err != nil {
		t.Fatal(err)
	}
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if name := a.(k8stesting.CreateActionImpl).Name; name != "builder" {
			return true, nil, apierrors.NewNotFound(corev1.Resource("serviceaccounts"), name)
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		if tr.Spec.Audiences[0] != "pullgate-registry" {
			t.Errorf("token for audiences %v", tr.Spec.Audiences)
		}
		tr.Status.Token = "sa-token"
		return true, tr, nil
	})
	dir := t.TempDir()
	file := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(file, []byte(`{"auths":{"quay.io":{"auth":"dTpw"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, out, _ := streams()
	o := &RegistryLoginOptions{IOStreams: s, ServiceAccount: "builder", To: file, Namespace: "b", Client: client}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "system:serviceaccount:b:builder") {
		t.Errorf("output %q", out)
	}
	data, _ := os.ReadFile(file)
	cfg, err := credentials.ParseConfig(data, credentials.Source{Kind: "file", Name: file})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range cfg.Entries {
		got[e.Key] = e.Password
	}
	if got["localhost:5000"] != "sa-token" || got["127.0.0.1:5000"] != "sa-token" || got["quay.io"] != "p" {
		t.Errorf("entries %v", got)
	}
	o.ServiceAccount = "ghost"
	if err := o.Run(ctx); err == nil {
		t.Error("a missing service account logged in")
	}
}
