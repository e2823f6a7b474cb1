package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Context is a test's context, ended after d or when the test ends.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Account makes service account ns/name (unless it exists, as default does), binds
// clusterRole to it in ns when clusterRole is not empty, and returns a token of it.
func (e *Env) Account(ctx context.Context, ns, name, clusterRole string) (string, error) {
	_, err := e.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	if clusterRole != "" {
		_, err := e.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + clusterRole},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		}
	}
	return e.ServiceAccountToken(ctx, ns, name)
}

// LayerTar is a tar archive holding one file, hello.txt, with content.
func LayerTar(content []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)})
	_, _ = tw.Write(content)
	_ = tw.Close()
	return buf.Bytes()
}

// PushFile pushes a one-layer image holding content as hello.txt with crane, as the
// holder of the credentials in dockerConfig, and returns its digest. extraEnv is
// added to crane's environment (a CA to trust, say).
func PushFile(ctx context.Context, dockerConfig, image string, content []byte, extraEnv ...string) (string, error) {
	dir, err := os.MkdirTemp("", "pullgate-push-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	layer := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(layer, LayerTar(content), 0o644); err != nil {
		return "", err
	}
	if _, err := CraneEnv(ctx, dockerConfig, extraEnv, "append", "-f", layer, "-t", image); err != nil {
		return "", err
	}
	out, err := CraneEnv(ctx, dockerConfig, extraEnv, "digest", image)
	if err != nil {
		return "", fmt.Errorf("pushed %s, but: %w", image, err)
	}
	return string(bytes.TrimSpace([]byte(out))), nil
}
