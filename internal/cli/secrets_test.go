package cli

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

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
