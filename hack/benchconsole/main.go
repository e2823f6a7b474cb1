// Command benchconsole measures the web console's first page (the projects list) with
// 100 projects holding 1,000 tags (goal: under 200 ms), served by `pullgate up`'s own
// console, beside `kubectl get namespaces` in the same run (a client's start and one
// API round trip).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

func main() {
	projects := flag.Int("projects", 100, "projects")
	tags := flag.Int("tags-per-project", 10, "tags of each project's one image stream")
	runs := flag.Int("runs", 20, "page loads")
	flag.Parse()
	ctx := context.Background()
	env, err := harness.Start(harness.Options{})
	check(err)
	defer env.Close()
	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	check(err)
	for i := range *projects {
		ns := fmt.Sprintf("bench-%03d", i)
		_, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		check(err)
		is := &imageapi.ImageStream{TypeMeta: metav1.TypeMeta{APIVersion: imageapi.Group + "/" + imageapi.Version, Kind: imageapi.Kind}, ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(is)
		check(err)
		created, err := dyn.Resource(imageapi.GVR).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
		check(err)
		for t := range *tags {
			is.Status.Tags = append(is.Status.Tags, imageapi.NamedTagEventList{Tag: fmt.Sprintf("v%d", t), Items: []imageapi.TagEvent{{
				Created: metav1.Now(), Digest: fmt.Sprintf("sha256:%064d", t), MediaType: "application/vnd.oci.image.manifest.v1+json"}}})
		}
		is.ResourceVersion = created.GetResourceVersion()
		obj, err = runtime.DefaultUnstructuredConverter.ToUnstructured(is)
		check(err)
		_, err = dyn.Resource(imageapi.GVR).Namespace(ns).UpdateStatus(ctx, &unstructured.Unstructured{Object: obj}, metav1.UpdateOptions{})
		check(err)
	}
	m := regexp.MustCompile(`console: (http://127\.0\.0\.1:\d+)(/login\?token=[0-9a-f]+)`).FindStringSubmatch(env.LogTail(200))
	if m == nil {
		check(fmt.Errorf("no console URL in up's output"))
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.Get(m[1] + m[2]) // logs in, follows to /projects
	check(err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var pages []time.Duration
	for range *runs {
		start := time.Now()
		resp, err := client.Get(m[1] + "/projects")
		check(err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			check(fmt.Errorf("GET /projects: %s", resp.Status))
		}
		pages = append(pages, time.Since(start))
	}
	kubectl, err := harness.KubectlBinary()
	check(err)
	var gets []time.Duration
	for range *runs {
		start := time.Now()
		out, err := exec.Command(kubectl, "get", "namespaces", "--kubeconfig", env.Kubeconfig).CombinedOutput()
		if err != nil {
			check(fmt.Errorf("kubectl: %v\n%s", err, out))
		}
		gets = append(gets, time.Since(start))
	}
	p50, p99 := percentiles(pages)
	k50, k99 := percentiles(gets)
	fmt.Printf("console projects page, %d projects, %d tags: p50 %s p99 %s (goal < 200ms: %v) | anchor kubectl get namespaces: p50 %s p99 %s\n",
		*projects, *projects**tags, p50.Round(time.Millisecond), p99.Round(time.Millisecond), p50 < 200*time.Millisecond, k50.Round(time.Millisecond), k99.Round(time.Millisecond))
}

func percentiles(d []time.Duration) (time.Duration, time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[(len(d)*99)/100]
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchconsole:", err)
		os.Exit(1)
	}
}
