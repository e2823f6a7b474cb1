// Command benchexplain measures `pullgate explain pull POD --probe=false` for a pod
// with 10 image pull secrets and an image of the integrated registry, against one
// `pullgate up` (goal: under 1 s), beside `kubectl get pod` of the same pod in the
// same run (the cost of starting a client and one API round trip).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

func main() {
	runs := flag.Int("runs", 20, "runs of each command")
	flag.Parse()
	ctx := context.Background()
	env, err := harness.Start(harness.Options{})
	check(err)
	defer env.Close()
	ns := "bench-explain"
	_, err = env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	check(err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: env.RegistryHost + "/" + ns + "/app:v1"}}}}
	for i := range 10 {
		data, err := credentials.SetAuth(nil, fmt.Sprintf("registry-%d.example.com", i), credentials.Credential{Username: "u", Password: "p"}, credentials.Docker)
		check(err)
		name := fmt.Sprintf("pull-%d", i)
		_, err = env.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}, metav1.CreateOptions{})
		check(err)
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
	}
	_, err = env.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	check(err)

	bin, err := harness.Binary()
	check(err)
	kubectl, err := harness.KubectlBinary()
	check(err)
	p50, p99 := measure(*runs, bin, "explain", "pull", "app", "-n", ns, "--probe=false", "--kubeconfig", env.Kubeconfig)
	k50, k99 := measure(*runs, kubectl, "get", "pod", "app", "-n", ns, "--kubeconfig", env.Kubeconfig)
	fmt.Printf("explain pull, pod with 10 secrets, no probe: p50 %s p99 %s (goal < 1s: %v) | anchor kubectl get pod: p50 %s p99 %s\n",
		p50.Round(time.Millisecond), p99.Round(time.Millisecond), p50 < time.Second, k50.Round(time.Millisecond), k99.Round(time.Millisecond))
}

// measure runs a command n times and returns its p50 and p99 wall time. The exit
// status is not an error: explain exits 1 when the pod would not pull.
func measure(n int, name string, args ...string) (time.Duration, time.Duration) {
	var d []time.Duration
	for range n {
		start := time.Now()
		cmd := exec.Command(name, args...)
		out, err := cmd.CombinedOutput()
		if _, exit := err.(*exec.ExitError); err != nil && !exit {
			check(fmt.Errorf("%s: %v\n%s", name, err, out))
		}
		d = append(d, time.Since(start))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[(len(d)*99)/100]
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchexplain:", err)
		os.Exit(1)
	}
}
