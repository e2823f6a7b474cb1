// Package clusterpullsecret owns the cluster pull secret (OpenShift's pullSecret): a docker
// config.json every node uses after a pod's own secrets, kept as a Secret so that it
// can be seen and replaced.
package clusterpullsecret

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/pkg/credentials"
)

// Where the cluster pull secret is kept.
const (
	Namespace = "pullgate-system"
	Name      = "pull-secret"
)

// Set parses a docker config.json and stores it as the cluster pull
// secret; a broken file changes nothing.
func Set(ctx context.Context, admin kubernetes.Interface, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("pull secret file: %w", err)
	}
	if _, err := credentials.ParseDockerConfigJSON(data, credentials.Source{Kind: "file", Name: file}); err != nil {
		return fmt.Errorf("pull secret file: %w", err)
	}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	secrets := admin.CoreV1().Secrets(Namespace)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: Name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
	existing, err := secrets.Get(ctx, Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
	case err == nil:
		existing.Data = secret.Data
		_, err = secrets.Update(ctx, existing, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("cluster pull secret %s/%s: %w", Namespace, Name, err)
	}
	return nil
}

// Get reads the cluster pull secret; none is no credentials.
func Get(ctx context.Context, client kubernetes.Interface) ([]*credentials.Config, error) {
	secret, err := client.CoreV1().Secrets(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cfg, err := credentials.FromSecret(secret)
	if err != nil {
		return nil, err
	}
	cfg.Source.Kind = "cluster pull secret"
	for i := range cfg.Entries {
		cfg.Entries[i].Source.Kind = cfg.Source.Kind
	}
	return []*credentials.Config{cfg}, nil
}
