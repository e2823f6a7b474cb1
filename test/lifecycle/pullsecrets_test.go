package lifecycle

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// Killing pullgate in the middle of a burst of new namespaces and starting it again
// converges: every service account ends with exactly one registry pull secret,
// listed once (OpenShift once made secrets without end here: OCPBUGS-36833).
func TestPullSecretsConvergeAfterSIGKILLMidBurst(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	var names []string
	for i := range 30 {
		ns, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: fmt.Sprintf("burst-%d-", i)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, ns.Name)
	}
	if err := env.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := env.Restart(); err != nil {
		t.Fatal(err)
	}
	var problem string
	if !harness.Eventually(ctx, 90*time.Second, func(ctx context.Context) bool {
		problem = pullSecretProblem(ctx, names)
		return problem == ""
	}) {
		t.Fatalf("did not converge: %s", problem)
	}
}

// pullSecretProblem says what is wrong with the pull secrets of the default, builder
// and deployer accounts of namespaces, or "".
func pullSecretProblem(ctx context.Context, namespaces []string) string {
	secrets, err := env.Admin.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: "pullgate.dev/registry-pull-secret=true"})
	if err != nil {
		return err.Error()
	}
	accounts, err := env.Admin.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	perAccount := map[string][]string{}
	for _, s := range secrets.Items {
		key := s.Namespace + "/" + s.Annotations[corev1.ServiceAccountNameKey]
		perAccount[key] = append(perAccount[key], s.Name)
	}
	byKey := map[string]*corev1.ServiceAccount{}
	for i := range accounts.Items {
		byKey[accounts.Items[i].Namespace+"/"+accounts.Items[i].Name] = &accounts.Items[i]
	}
	for _, ns := range namespaces {
		for _, name := range []string{"default", "builder", "deployer"} {
			key := ns + "/" + name
			sa := byKey[key]
			if sa == nil {
				return key + " does not exist"
			}
			if got := perAccount[key]; len(got) != 1 {
				return fmt.Sprintf("%s has %d pull secrets %v, want 1", key, len(got), got)
			}
			linked := 0
			for _, ref := range sa.ImagePullSecrets {
				if ref.Name == perAccount[key][0] {
					linked++
				}
			}
			if linked != 1 {
				return fmt.Sprintf("%s lists its pull secret %d times", key, linked)
			}
		}
	}
	return ""
}
