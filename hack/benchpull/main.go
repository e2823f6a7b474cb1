// Command benchpull compares a pod's image pull by pullgate's node agent with `crane
// pull` of an image of the same shape, in one run against one `pullgate up`: a
// 5-layer image of about 200 MB in the integrated registry (goal: the node agent
// takes ≤ 1.0× crane's wall time). Then a second pod with the same image, which must
// transfer 0 bytes. Each measurement pulls a fresh image, so neither side is warm.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"pullgate.dev/pullgate/internal/harness"
)

func main() {
	layers := flag.Int("layers", 5, "layers per image")
	layerMiB := flag.Int("layer-mib", 40, "size of each layer")
	rounds := flag.Int("rounds", 3, "pulls per side (each of a fresh image)")
	flag.Parse()
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "benchpull-")
	check(err)
	defer os.RemoveAll(tmp)
	env, err := harness.Start(harness.Options{})
	check(err)
	defer env.Close()

	ns := "benchpull"
	_, err = env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	check(err)
	token, err := env.Account(ctx, ns, "pusher", "admin")
	check(err)
	cfg, err := env.DockerConfig(tmp, token)
	check(err)

	var craneTimes, podTimes []time.Duration
	var size int64
	for i := range *rounds {
		craneImage := push(ctx, cfg, tmp, fmt.Sprintf("%s/%s/crane-%d:v1", env.RegistryHost, ns, i), *layers, *layerMiB)
		podImage := push(ctx, cfg, tmp, fmt.Sprintf("%s/%s/pod-%d:v1", env.RegistryHost, ns, i), *layers, *layerMiB)
		out := filepath.Join(tmp, fmt.Sprintf("crane-out-%d", i))
		begin := time.Now()
		_, err := harness.Crane(ctx, cfg, "pull", "--format=oci", craneImage, out)
		check(err)
		craneTimes = append(craneTimes, time.Since(begin))
		check(os.RemoveAll(out))
		podTimes = append(podTimes, podPull(ctx, env, ns, fmt.Sprintf("first-%d", i), podImage))
		size = int64(*layers) * int64(*layerMiB) << 20
	}
	before := metric(env, "pullgate_node_image_pull_bytes_total")
	again := podPull(ctx, env, ns, "second", fmt.Sprintf("%s/%s/pod-0:v1", env.RegistryHost, ns))
	transferred := metric(env, "pullgate_node_image_pull_bytes_total") - before

	c, p := median(craneTimes), median(podTimes)
	fmt.Printf("%-44s %12s %12s %8s %8s\n", fmt.Sprintf("image pull, %d layers, %d MB (median of %d)", *layers, size/1e6, *rounds), "node agent", "crane pull", "ratio", "goal")
	fmt.Printf("%-44s %12s %12s %7.2fx %8s\n", "wall time: pod created → ImagesPulled / crane", p.Round(time.Millisecond), c.Round(time.Millisecond), float64(p)/float64(c), "<= 1.0x")
	fmt.Printf("%-44s %12s %12s %8s %8s\n", "second pod, same image: bytes transferred", fmt.Sprint(int64(transferred)), "-", "", "0")
	fmt.Printf("%-44s %12s\n", "second pod: created → ImagesPulled", again.Round(time.Millisecond))
}

// push pushes an image of n random layers of mib MiB each.
func push(ctx context.Context, cfg, tmp, image string, n, mib int) string {
	args := []string{"append", "-t", image}
	for i := range n {
		dir := filepath.Join(tmp, fmt.Sprintf("layer-%d", i))
		check(os.MkdirAll(dir, 0o755))
		data := make([]byte, mib<<20)
		_, _ = rand.Read(data)
		check(os.WriteFile(filepath.Join(dir, "data"), data, 0o644))
		tarFile := filepath.Join(tmp, fmt.Sprintf("layer-%d.tar", i))
		if out, err := exec.CommandContext(ctx, "tar", "-C", dir, "-cf", tarFile, "data").CombinedOutput(); err != nil {
			check(fmt.Errorf("tar: %v: %s", err, out))
		}
		args = append(args, "-f", tarFile)
	}
	_, err := harness.Crane(ctx, cfg, args...)
	check(err)
	return image
}

// podPull creates a pod and returns the time until its ImagesPulled condition is True.
func podPull(ctx context.Context, env *harness.Env, ns, name, image string) time.Duration {
	pods := env.Admin.CoreV1().Pods(ns)
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	check(err)
	defer w.Stop()
	begin := time.Now()
	_, err = pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}, metav1.CreateOptions{})
	check(err)
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case ev := <-w.ResultChan():
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Error {
				continue
			}
			for _, c := range pod.Status.Conditions {
				if c.Type == "ImagesPulled" && c.Status == corev1.ConditionTrue {
					return time.Since(begin)
				}
				if c.Type == "ImagesPulled" && c.Status == corev1.ConditionFalse && strings.Contains(c.Reason, "Back") {
					check(fmt.Errorf("pod %s: %s", name, c.Message))
				}
			}
		case <-timeout:
			check(fmt.Errorf("pod %s: images not pulled in 5 minutes", name))
		}
	}
}

func metric(env *harness.Env, name string) float64 {
	v, err := env.Metric(name)
	check(err)
	return v
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchpull:", err)
		os.Exit(1)
	}
}
