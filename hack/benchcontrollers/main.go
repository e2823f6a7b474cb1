// Command benchcontrollers creates 500 namespaces in a burst against one `pullgate
// up` and measures, for each of their service accounts (default, builder, deployer),
// the time from the account's appearance to its registry pull secret being linked
// on it (goal: p99 < 1 s), then counts the pull secrets (goal: exactly one per
// account), and how much `up`'s resident memory grew per 1,000 namespaces.
// -namespaces 10000 is the scale goal (converged in under 60 s).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/harness"
)

func main() {
	count := flag.Int("namespaces", 500, "namespaces to create in the burst")
	parallel := flag.Int("parallel", 32, "concurrent namespace creations")
	flag.Parse()
	ctx := context.Background()
	env, err := harness.Start(harness.Options{})
	check(err)
	defer env.Close()
	cfg := rest.CopyConfig(env.AdminConfig)
	cfg.QPS, cfg.Burst = 1000, 2000
	client, err := kubernetes.NewForConfig(cfg)
	check(err)

	rssBefore := rssMiB(env.Pid())
	prefix := "bench-" + fmt.Sprint(time.Now().Unix()%100000) + "-"
	w, err := client.CoreV1().ServiceAccounts("").Watch(ctx, metav1.ListOptions{})
	check(err)
	defer w.Stop()
	var mu sync.Mutex
	seen, linked := map[string]time.Time{}, map[string]time.Time{}
	want := *count * 3
	done := make(chan struct{})
	go func() {
		for ev := range w.ResultChan() {
			sa, ok := ev.Object.(*corev1.ServiceAccount)
			if !ok || ev.Type == watch.Deleted || !strings.HasPrefix(sa.Namespace, prefix) {
				continue
			}
			key := sa.Namespace + "/" + sa.Name
			now := time.Now()
			mu.Lock()
			if _, ok := seen[key]; !ok {
				seen[key] = now
			}
			for _, ref := range sa.ImagePullSecrets {
				if ref.Name == sa.Name+"-dockercfg" {
					if _, ok := linked[key]; !ok {
						linked[key] = now
					}
				}
			}
			n := len(linked)
			mu.Unlock()
			if n == want {
				close(done)
				return
			}
		}
	}()

	begin := time.Now()
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	for i := range *count {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d", prefix, i)}}, metav1.CreateOptions{})
			check(err)
		}()
	}
	wg.Wait()
	created := time.Since(begin)
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		check(fmt.Errorf("only %d of %d service accounts linked after 5 minutes", len(linked), want))
	}
	all := time.Since(begin)
	mu.Lock()
	var lat []time.Duration
	for key, t := range linked {
		lat = append(lat, t.Sub(seen[key]))
	}
	mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	secrets, err := client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: "pullgate.dev/registry-pull-secret=true"})
	check(err)
	ours := 0
	for _, s := range secrets.Items {
		if strings.HasPrefix(s.Namespace, prefix) {
			ours++
		}
	}
	fmt.Printf("%-58s %10s %10s\n", fmt.Sprintf("%d namespaces in a burst (%d service accounts)", *count, want), "measured", "goal")
	fmt.Printf("%-58s %10s %10s\n", "service account appears → pull secret linked, p50", lat[len(lat)/2].Round(time.Millisecond), "")
	fmt.Printf("%-58s %10s %10s\n", "service account appears → pull secret linked, p99", lat[len(lat)*99/100].Round(time.Millisecond), "< 1s")
	fmt.Printf("%-58s %10s %10s\n", "first namespace created → every account linked", all.Round(time.Millisecond), "")
	fmt.Printf("%-58s %10s %10s\n", "(namespaces created in)", created.Round(time.Millisecond), "")
	fmt.Printf("%-58s %10d %10d\n", "registry pull secrets in those namespaces", ours, want)
	grown := rssMiB(env.Pid()) - rssBefore
	fmt.Printf("%-58s %7.0f MiB %10s\n", "pullgate up's RSS growth per 1,000 namespaces", grown*1000/float64(*count), "")
}

// rssMiB is a process's resident memory (VmRSS), in MiB.
func rssMiB(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb float64
			fmt.Sscan(f[1], &kb)
			return kb / 1024
		}
	}
	return 0
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcontrollers:", err)
		os.Exit(1)
	}
}
