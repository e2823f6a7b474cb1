package images

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/pkg/credentials"
)

// ProjectCredentials are the credentials an import into namespace may use for
// image: every pull secret of the project (as OpenShift's imports use them, linked
// to an account or not), matched and ordered as the kubelet matches a pod's.
// Secrets that cannot be read are left out and said so in Problems.
func ProjectCredentials(ctx context.Context, client kubernetes.Interface, namespace, image string) (credentials.Candidates, error) {
	secrets, err := client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return credentials.Candidates{}, fmt.Errorf("reading the pull secrets of project %s: %w", namespace, err)
	}
	var configs []*credentials.Config
	var problems []error
	for i := range secrets.Items {
		s := &secrets.Items[i]
		if s.Type != corev1.SecretTypeDockerConfigJson && s.Type != corev1.SecretTypeDockercfg {
			continue
		}
		cfg, err := credentials.FromSecret(s)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		configs = append(configs, cfg)
	}
	var keyring credentials.Keyring
	problems = append(problems, keyring.AddLayer("project "+namespace+" pull secrets", configs...)...)
	got, err := keyring.Candidates(ctx, image)
	if err != nil {
		return credentials.Candidates{}, err
	}
	for _, p := range problems {
		got.Problems = joinProblem(got.Problems, p)
	}
	return got, nil
}

func joinProblem(a, b error) error {
	if a == nil {
		return b
	}
	return fmt.Errorf("%w; %w", a, b)
}
