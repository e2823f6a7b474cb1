// Command benchpullthrough measures pull-through of imported images against a real
// `pullgate up` and the seed's htpasswd registry: the first `crane pull` of an image
// imported with reference policy Local through the integrated registry (which reads
// it at the source with the project's secret and stores it) beside `crane pull` of
// the same image straight from the source; and the second pull through (from
// storage) beside the pull of the same image pushed to the integrated registry.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"pullgate.dev/pullgate/hack/internal/benchstat"
	"pullgate.dev/pullgate/internal/harness"
)

func main() {
	runs := flag.Int("runs", 5, "images measured")
	mib := flag.Int("mib", 50, "image size in MiB")
	flag.Parse()
	ctx := context.Background()
	proxy, err := harness.StartNameProxy("example.com")
	benchstat.Check(err)
	defer proxy.Close()
	for _, kv := range proxy.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	env, err := harness.Start(harness.Options{})
	benchstat.Check(err)
	defer env.Close()
	regs, err := harness.StartSeedRegistries(filepath.Join(env.DataDir, "pki"))
	benchstat.Check(err)
	defer regs.Stop()
	tmp, err := os.MkdirTemp("", "benchpullthrough-")
	benchstat.Check(err)
	defer os.RemoveAll(tmp)

	ns := "bench"
	_, err = env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	benchstat.Check(err)
	benchstat.Check(os.MkdirAll(filepath.Join(tmp, "source"), 0o700))
	source, err := harness.BasicDockerConfig(filepath.Join(tmp, "source"), map[string][2]string{regs.Private: {"main-user", "main-pass"}})
	benchstat.Check(err)
	data, err := os.ReadFile(filepath.Join(source, "config.json"))
	benchstat.Check(err)
	_, err = env.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "source"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}, metav1.CreateOptions{})
	benchstat.Check(err)
	token, err := env.Account(ctx, ns, "pusher", "admin")
	benchstat.Check(err)
	local, err := env.DockerConfig(tmp, token)
	benchstat.Check(err)
	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	benchstat.Check(err)
	imports := dyn.Resource(schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreamimports"}).Namespace(ns)

	pull := func(cfg, image string, extraEnv ...string) time.Duration {
		out := filepath.Join(tmp, "out")
		begin := time.Now()
		_, err := harness.CraneEnv(ctx, cfg, extraEnv, "pull", "--format=oci", image, out)
		took := time.Since(begin)
		benchstat.Check(err)
		benchstat.Check(os.RemoveAll(out))
		return took
	}
	var direct, first, second, pushed []time.Duration
	for i := range *runs {
		content := make([]byte, *mib<<20)
		_, _ = rand.Read(content)
		from := fmt.Sprintf("%s/bench/app:v%d", regs.Private, i)
		_, err := harness.PushFile(ctx, source, from, content, regs.CAEnv)
		benchstat.Check(err)
		tag := fmt.Sprintf("v%d", i)
		isi := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport",
			"metadata": map[string]any{"name": "app"},
			"spec": map[string]any{"import": true, "images": []any{map[string]any{
				"from": map[string]any{"kind": "DockerImage", "name": from}, "to": map[string]any{"name": tag},
				"referencePolicy": map[string]any{"type": "Local"}}}}}}
		benchstat.Until(time.Minute, func() bool { _, err = imports.Create(ctx, isi, metav1.CreateOptions{}); return err == nil })
		_, err = harness.PushFile(ctx, local, fmt.Sprintf("%s/%s/pushed:%s", env.RegistryHost, ns, tag), content)
		benchstat.Check(err)

		direct = append(direct, pull(source, from, regs.CAEnv))
		through := fmt.Sprintf("%s/%s/app:%s", env.RegistryHost, ns, tag)
		first = append(first, pull(local, through))
		second = append(second, pull(local, through))
		pushed = append(pushed, pull(local, fmt.Sprintf("%s/%s/pushed:%s", env.RegistryHost, ns, tag)))
	}
	fmt.Printf("%-58s %10s %10s %s\n", fmt.Sprintf("pull-through, %d MiB (same machine, same run)", *mib), "p50", "max", "anchor")
	fmt.Printf("%-58s %10s %10s %s\n", fmt.Sprintf("first crane pull through the registry (%d)", len(first)), benchstat.Pct(first, 50, time.Millisecond), benchstat.Pct(first, 100, time.Millisecond),
		fmt.Sprintf("crane pull from the source: p50 %s (%.2f×)", benchstat.Pct(direct, 50, time.Millisecond), benchstat.Ratio(first, direct)))
	fmt.Printf("%-58s %10s %10s %s\n", fmt.Sprintf("second crane pull, from storage (%d)", len(second)), benchstat.Pct(second, 50, time.Millisecond), benchstat.Pct(second, 100, time.Millisecond),
		fmt.Sprintf("the same image pushed, pulled: p50 %s (%.2f×)", benchstat.Pct(pushed, 50, time.Millisecond), benchstat.Ratio(second, pushed)))
}
