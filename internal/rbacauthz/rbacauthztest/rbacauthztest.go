// Package rbacauthztest holds RBAC fixtures for tests and benchmarks.
package rbacauthztest

import (
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// PullerBindings are the cluster role system:image-puller and n RoleBindings of it,
// spread over 1,000 namespaces ns-0…ns-999, binding service accounts clients/sa-0…
// clients/sa-<n-1>: binding i is in namespace ns-<i%1000>.
func PullerBindings(n int) []runtime.Object {
	objs := []runtime.Object{&rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "system:image-puller"},
		Rules:      []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}}},
	}}
	for i := range n {
		objs = append(objs, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%1000), Name: fmt.Sprintf("b-%d", i)},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: fmt.Sprintf("sa-%d", i), Namespace: "clients"}},
		})
	}
	return objs
}
