// Command benchrealnode measures pods on the real kubelet of `pullgate up --node
// kubelet` (root only), in one run: pod created → Running for a fresh image from the
// integrated registry (first pull) and for the same image again (cached), beside the
// node agent's created → ImagesPulled for an image of the same shape on another `up`,
// and `crane pull` of one (the anchor for transfer); then a pull through pullgate's
// credential provider beside one with the service account's pull secret, with the
// kubelet's own metric of the plugin's time.
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
	"k8s.io/apimachinery/pkg/util/wait"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

func main() {
	mib := flag.Int("layer-mib", 50, "size of the image's data layer")
	rounds := flag.Int("rounds", 3, "measurements per row (each of a fresh image)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("benchrealnode: skipped: the real kubelet and containerd need root")
		return
	}
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "benchrealnode-")
	check(err)
	defer os.RemoveAll(tmp)
	dataMiB = *mib
	layers := buildLayers(tmp)

	kubelet, err := harness.Start(harness.Options{ExtraArgs: []string{"--node", "kubelet"}})
	check(err)
	defer kubelet.Close()
	agent, err := harness.Start(harness.Options{})
	check(err)
	defer agent.Close()

	var first, cached, agentTimes, craneTimes, secretTimes, pluginTimes []time.Duration
	for i := range *rounds {
		k := project(ctx, kubelet, fmt.Sprintf("bench-%d", i))
		a := project(ctx, agent, fmt.Sprintf("bench-%d", i))
		image := push(ctx, kubelet, k, "app", tmp, layers)
		first = append(first, timePod(ctx, kubelet, k, "first", image, running))
		cached = append(cached, timePod(ctx, kubelet, k, "cached", image, running))
		agentTimes = append(agentTimes, timePod(ctx, agent, a, "first", push(ctx, agent, a, "app", tmp, layers), imagesPulled))
		craneTimes = append(craneTimes, cranePull(ctx, kubelet, k, push(ctx, kubelet, k, "crane", tmp, layers), tmp))
		secretTimes = append(secretTimes, timePod(ctx, kubelet, k, "secret", push(ctx, kubelet, k, "secret", tmp, layers), running))
		elsewhere(ctx, kubelet, k)
		pluginTimes = append(pluginTimes, timePod(ctx, kubelet, k, "plugin", push(ctx, kubelet, k, "plugin", tmp, layers), running, "elsewhere"))
	}
	sum, count := pluginMetric(ctx, kubelet)

	fmt.Printf("%-62s %10s %s\n", fmt.Sprintf("real kubelet, image of %d MiB (median of %d)", *mib, *rounds), "time", "anchor")
	c := median(craneTimes)
	fmt.Printf("%-62s %10s %s\n", "crane pull (anchor for transfer)", c.Round(time.Millisecond), "")
	row := func(name string, d time.Duration) {
		fmt.Printf("%-62s %10s %.2fx crane\n", name, d.Round(time.Millisecond), float64(d)/float64(c))
	}
	row("pod created → Running, first pull (kubelet + containerd)", median(first))
	row("pod created → Running, image on the node", median(cached))
	row("pod created → ImagesPulled, first pull (node agent)", median(agentTimes))
	row("pod created → Running, with the account's pull secret", median(secretTimes))
	row("pod created → Running, credential provider only", median(pluginTimes))
	if count > 0 {
		fmt.Printf("%-62s %10s (%d runs, kubelet_credential_provider_plugin_duration)\n", "credential provider plugin, mean time per exec",
			time.Duration(sum/count*float64(time.Second)).Round(time.Microsecond), int(count))
	}
}

const (
	running      = "Running"
	imagesPulled = "ImagesPulled"
)

// buildLayers builds the test app and a random data layer, as tar files.
func buildLayers(tmp string) []string {
	build := exec.Command("go", "build", "-o", filepath.Join(tmp, "app"), "./test/realnode/testdata/app")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s", out)
		check(err)
	}
	check(exec.Command("tar", "-C", tmp, "-cf", filepath.Join(tmp, "app.tar"), "app").Run())
	return []string{filepath.Join(tmp, "app.tar"), filepath.Join(tmp, "data")}
}

// push pushes a fresh image (the app, a new random data layer) to ns/repo:v1.
func push(ctx context.Context, e *harness.Env, ns, repo, tmp string, layers []string) string {
	dataDir := filepath.Join(tmp, "datadir")
	check(os.MkdirAll(dataDir, 0o755))
	random := make([]byte, dataMiB<<20)
	_, _ = rand.Read(random)
	check(os.WriteFile(filepath.Join(dataDir, "data.bin"), random, 0o644))
	check(exec.Command("tar", "-C", dataDir, "-cf", layers[1], "data.bin").Run())
	token, err := e.Account(ctx, ns, "pusher", "system:image-builder")
	check(err)
	cfg, err := e.DockerConfig(tmp, token)
	check(err)
	base, image := e.RegistryHost+"/"+ns+"/"+repo+":base", e.RegistryHost+"/"+ns+"/"+repo+":v1"
	_, err = harness.Crane(ctx, cfg, "append", "--oci-empty-base", "-f", layers[0], "-f", layers[1], "-t", base)
	check(err)
	_, err = harness.Crane(ctx, cfg, "mutate", base, "--set-platform", "linux/amd64", "--entrypoint", "/app", "-t", image)
	check(err)
	return image
}

// dataMiB is the data layer's size (-layer-mib).
var dataMiB = 50

func project(ctx context.Context, e *harness.Env, name string) string {
	_, err := e.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	check(err)
	check(wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		sa, err := e.Admin.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil && len(sa.ImagePullSecrets) > 0, nil
	}))
	return name
}

// elsewhere is a pull secret for another registry: a pod holding only it reaches the
// integrated registry through the credential provider.
func elsewhere(ctx context.Context, e *harness.Env, ns string) {
	data, err := credentials.SetAuth(nil, "other.example.com", credentials.Credential{Username: "u", Password: "p"}, credentials.Docker)
	check(err)
	_, err = e.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}, metav1.CreateOptions{})
	check(err)
}

// timePod creates a pod and times it to Running (real kubelet) or to its images
// pulled (node agent).
func timePod(ctx context.Context, e *harness.Env, ns, name, image, until string, secrets ...string) time.Duration {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: image}}, TerminationGracePeriodSeconds: new(int64)}}
	for _, s := range secrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	begin := time.Now()
	_, err := e.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	check(err)
	check(wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := e.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if until == running {
			return p.Status.Phase == corev1.PodRunning, nil
		}
		for _, c := range p.Status.Conditions {
			if string(c.Type) == imagesPulled && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	}))
	return time.Since(begin)
}

func cranePull(ctx context.Context, e *harness.Env, ns, image, tmp string) time.Duration {
	token, err := e.Account(ctx, ns, "pusher", "system:image-builder")
	check(err)
	cfg, err := e.DockerConfig(tmp, token)
	check(err)
	out := filepath.Join(tmp, "crane-out")
	defer os.RemoveAll(out)
	begin := time.Now()
	_, err = harness.Crane(ctx, cfg, "pull", "--format=oci", image, out)
	check(err)
	return time.Since(begin)
}

// pluginMetric reads the kubelet's kubelet_credential_provider_plugin_duration
// (seconds) through the API server's node proxy: its sum and count.
func pluginMetric(ctx context.Context, e *harness.Env) (float64, float64) {
	raw, err := e.Admin.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/local/proxy/metrics").DoRaw(ctx)
	check(err)
	var sum, count float64
	for line := range strings.Lines(string(raw)) {
		var v float64
		switch {
		case strings.HasPrefix(line, "kubelet_credential_provider_plugin_duration_sum"):
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
			sum += v
		case strings.HasPrefix(line, "kubelet_credential_provider_plugin_duration_count"):
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
			count += v
		}
	}
	return sum, count
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrealnode:", err)
		os.Exit(1)
	}
}
