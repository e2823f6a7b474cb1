package lifecycle

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// Objects written before a SIGKILL are all there after the restart, unchanged.
func TestSIGKILLKeepsEveryObject(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	ns, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "survivor-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := env.Admin.CoreV1().ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "keep"}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := env.Admin.CoreV1().Secrets(ns.Name).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "keep"}, StringData: map[string]string{"token": "t"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	if err := env.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := env.Restart(); err != nil {
		t.Fatal(err)
	}

	gotNS, err := env.Admin.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
	if err != nil || gotNS.UID != ns.UID {
		t.Fatalf("namespace after restart: %v (uid %v, want %v)", err, uidOf(gotNS), ns.UID)
	}
	gotCM, err := env.Admin.CoreV1().ConfigMaps(ns.Name).Get(ctx, "keep", metav1.GetOptions{})
	if err != nil || gotCM.UID != cm.UID || gotCM.Data["k"] != "v" {
		t.Fatalf("configmap after restart: %v %+v", err, gotCM)
	}
	gotSecret, err := env.Admin.CoreV1().Secrets(ns.Name).Get(ctx, "keep", metav1.GetOptions{})
	if err != nil || gotSecret.UID != secret.UID || string(gotSecret.Data["token"]) != "t" {
		t.Fatalf("secret after restart: %v", err)
	}
}

func uidOf(o metav1.Object) any {
	if o == nil {
		return nil
	}
	return o.GetUID()
}

// SIGTERM and SIGINT stop everything: the process exits 0, the API port is free,
// the data directory's lock is released, and the next start serves again.
func TestSignalsStopEverything(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			if err := env.Signal(sig); err != nil {
				t.Fatalf("pullgate exited with %v after %v; log:\n%s", err, sig, env.LogTail(30))
			}
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(env.APIPort)))
			if err != nil {
				t.Fatalf("API port still held after pullgate exited: %v", err)
			}
			l.Close()
			if err := env.Restart(); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Admin.CoreV1().Namespaces().Get(harness.Context(t, 3*time.Minute), "default", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
