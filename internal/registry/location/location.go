// Package location is where the integrated registry says where it is:
// ConfigMap kube-public/pullgate-registry, written by the registry and read by
// clients (pullgate registry info, registry login), readable by anyone as
// kube-public is.
package location

import (
	"context"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The ConfigMap's namespace and name.
const (
	Namespace = "kube-public"
	Name      = "pullgate-registry"
)

// Info is what the registry publishes about itself.
type Info struct {
	// URL is how clients reach it, e.g. http://localhost:5000.
	URL string
	// Hostnames are every host[:port] it answers to.
	Hostnames []string
}

// Publish writes info, changing the ConfigMap only when it differs.
func Publish(ctx context.Context, client kubernetes.Interface, info Info) error {
	want := map[string]string{"url": info.URL, "hostnames": strings.Join(info.Hostnames, ",")}
	cms := client.CoreV1().ConfigMaps(Namespace)
	cm, err := cms.Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name}, Data: want}, metav1.CreateOptions{})
	} else if err == nil && !maps.Equal(cm.Data, want) {
		cm.Data = want
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("publishing the registry's names in configmap %s/%s: %w", Namespace, Name, err)
	}
	return nil
}

// Read returns what the registry published.
func Read(ctx context.Context, client kubernetes.Interface) (Info, error) {
	cm, err := client.CoreV1().ConfigMaps(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Info{}, fmt.Errorf("no integrated registry is published in this cluster (configmap %s/%s not found): run pullgate up, or pullgate registry serve against it", Namespace, Name)
	}
	if err != nil {
		return Info{}, err
	}
	return Info{Hostnames: strings.Split(cm.Data["hostnames"], ","), URL: cm.Data["url"]}, nil
}
