// Command benchcontrollers measures pullgate's controllers against what the machine's
// own API server can do, each figure beside its anchor from the same run:
//
//  1. the write floor: the embedded API server's raw create rate for small objects
//     (ConfigMaps from 64 clients, no client-side rate limit), and the writes one
//     namespace costs, counted from the API server's apiserver_request_total;
//  2. a burst of namespaces with pullgate's controllers on: every service account
//     (default, builder, deployer) linked to exactly one pull secret, the time that
//     took beside the floor (writes ÷ raw rate), and p50/p99 per account;
//  3. the same burst with --serviceaccount-pull-secrets=false (no pull secrets: what
//     a cluster whose nodes pull with the credential provider converges on), and on
//     bare Kubernetes (pullgate's controllers off: --leader-elect=false) with the
//     same objects written by the bench's own 64 clients instead (accounts builder
//     and deployer, three role bindings, three secrets of a pull secret's size, the
//     accounts linked to them);
//  4. memory per 1,000 namespaces, bare with the same objects and with the
//     controllers: the whole process's Go heap after a collection, and its resident
//     set, with where the heap and the CPU go (pprof, up --profiling).
//
// -namespaces 10000 is the scale run the README quotes.
package main

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"pullgate.dev/pullgate/hack/internal/benchstat"
	"pullgate.dev/pullgate/internal/harness"
)

var (
	count    = flag.Int("namespaces", 2000, "namespaces to create in each burst")
	parallel = flag.Int("parallel", 64, "concurrent creations (the raw rate's clients too)")
	rawCount = flag.Int("raw", 20000, "ConfigMaps created to measure the raw create rate")
	profile  = flag.String("profile-dir", "bin/profiles", "where the heap and CPU profiles of the run with pullgate's controllers are kept")
	kill     = flag.Bool("kill", true, "also run the burst once more, SIGKILLing up half way, and count the pull secrets after")
)

func main() {
	flag.Parse()
	benchstat.Check(os.MkdirAll(*profile, 0o755))

	rate := rawRate()
	off := []string{"--leader-elect=false"} // pullgate's controllers off
	kube := burst(run{name: "bare Kubernetes, namespaces only (its own controllers)", upArgs: off, accounts: 1, done: defaultAccount})
	bare := burst(run{name: "bare Kubernetes, the same objects by 64 clients", upArgs: off, accounts: 3, done: linked, clientWrites: true})
	secretless := burst(run{name: "pullgate, --serviceaccount-pull-secrets=false", upArgs: []string{"--serviceaccount-pull-secrets=false"}, accounts: 3, done: anyAccount})
	full := burst(run{name: "pullgate (pull secrets)", accounts: 3, done: linked, profiled: true})

	n := float64(*count)
	fmt.Printf("\nraw create rate of the embedded API server (%d ConfigMaps, %d clients, no client rate limit): %.0f writes/s\n", *rawCount, *parallel, rate)
	fmt.Printf("%-48s %11s %9s %9s %9s %9s %11s %11s\n", fmt.Sprintf("%d namespaces in a burst", *count), "writes/ns", "floor", "took", "÷ floor", "p99/acct", "heap/1k ns", "RSS/1k ns")
	for _, r := range []result{kube, bare, secretless, full} {
		floor := time.Duration(r.writes / rate * float64(time.Second))
		fmt.Printf("%-48s %11.1f %9s %9s %8.2f× %9s %7.0f MiB %7.0f MiB\n", r.name, r.writes/n, floor.Round(100*time.Millisecond),
			r.took.Round(100*time.Millisecond), float64(r.took)/float64(floor), r.p99.Round(10*time.Millisecond), r.heapMiB*1000/n, r.rssMiB*1000/n)
	}
	fmt.Printf("%-48s %11s %9s %9s %9s %9s %10.0f%% %10.0f%%\n", "pullgate's controllers add, beside bare", "", "", "", "", "",
		100*(full.heapMiB-bare.heapMiB)/bare.heapMiB, 100*(full.rssMiB-bare.rssMiB)/bare.rssMiB)
	fmt.Printf("(goals: took ≤ 1.25× the floor; the controllers add ≤ 25%% to bare Kubernetes' memory; pull secrets: %d, exactly one per account: %d)\n", full.secrets, 3**count)
	if *kill {
		killed()
	}
	fmt.Printf("\nwhere the writes go, with pullgate's controllers (apiserver_request_total, per namespace):\n%s", full.byResource)
	fmt.Printf("\nwhere the heap goes after the burst (go tool pprof -top -sample_index=inuse_space %s):\n%s", full.heapProfile, full.heapTop)
	fmt.Printf("\nwhere the CPU went during the burst (go tool pprof -top %s):\n%s", full.cpuProfile, full.cpuTop)
}

// rawRate is the embedded API server's create rate for small ConfigMaps, on an up of
// its own whose pullgate controllers are off.
func rawRate() float64 {
	env, err := harness.Start(harness.Options{ExtraArgs: []string{"--leader-elect=false"}})
	benchstat.Check(err)
	defer env.Close()
	client := unlimited(env.AdminConfig)
	ctx := context.Background()
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "raw"}}, metav1.CreateOptions{})
	benchstat.Check(err)
	var next atomic.Int64
	begin := time.Now()
	var wg sync.WaitGroup
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(*rawCount); i = next.Add(1) {
				_, err := client.CoreV1().ConfigMaps("raw").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("cm-", i)},
					Data: map[string]string{"k": "a small value"}}, metav1.CreateOptions{})
				benchstat.Check(err)
			}
		}()
	}
	wg.Wait()
	return float64(*rawCount) / time.Since(begin).Seconds()
}

type result struct {
	name                 string
	writes               float64 // counted by the API server during the burst
	byResource           string
	took, p50, p99       time.Duration
	heapMiB, rssMiB      float64 // grown during the burst
	secrets              int
	heapProfile, heapTop string
	cpuProfile, cpuTop   string
}

// converged says, from what the watch saw of a namespace's service accounts, the
// moment the burst's accounts are done, for each account.
type converged func(sa *corev1.ServiceAccount) bool

func anyAccount(*corev1.ServiceAccount) bool        { return true }
func defaultAccount(sa *corev1.ServiceAccount) bool { return sa.Name == "default" }
func linked(sa *corev1.ServiceAccount) bool {
	for _, ref := range sa.ImagePullSecrets {
		if ref.Name == sa.Name+"-dockercfg" {
			return true
		}
	}
	return false
}

// run is one burst: on an up with upArgs, namespaces created (and with clientWrites,
// what pullgate writes in them written by the bench's clients) until accounts per
// namespace are done.
type run struct {
	name         string
	upArgs       []string
	accounts     int
	done         converged
	clientWrites bool
	profiled     bool
}

// burst creates the namespaces on an up of its own and waits until every account is
// done.
func burst(r run) result {
	name, done, profiled, want := r.name, r.done, r.profiled, *count*r.accounts
	env, err := harness.Start(harness.Options{ExtraArgs: append([]string{"--profiling"}, r.upArgs...)})
	benchstat.Check(err)
	defer env.Close()
	ctx := context.Background()
	client := unlimited(env.AdminConfig)
	prefix := "burst-"

	heapBefore, rssBefore := memory(env, client)
	writesBefore, byBefore := writes(client)

	// An informer, not a bare watch: under load the API server may close a watch
	// that falls behind, and a reflector watches again.
	var mu sync.Mutex
	seen, finished := map[string]time.Time{}, map[string]time.Time{}
	all := make(chan struct{})
	observe := func(obj any) {
		sa, ok := obj.(*corev1.ServiceAccount)
		if !ok || !strings.HasPrefix(sa.Namespace, prefix) {
			return
		}
		key, now := sa.Namespace+"/"+sa.Name, time.Now()
		mu.Lock()
		defer mu.Unlock()
		if _, ok := seen[key]; !ok {
			seen[key] = now
		}
		if _, ok := finished[key]; !ok && done(sa) {
			finished[key] = now
			if len(finished) == want {
				close(all)
			}
		}
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	_, err = factory.Core().V1().ServiceAccounts().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: observe, UpdateFunc: func(_, obj any) { observe(obj) }})
	benchstat.Check(err)
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	var cpu []byte
	cpuDone := make(chan struct{})
	if profiled {
		go func() {
			defer close(cpuDone)
			cpu, _ = client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "20").DoRaw(ctx)
		}()
	}
	begin := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(*count); i = next.Add(1) {
				ns := fmt.Sprint(prefix, i)
				_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
				benchstat.Check(err)
				if r.clientWrites {
					writeWhatPullgateWrites(ctx, client, ns)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-all:
	case <-time.After(15 * time.Minute):
		mu.Lock()
		benchstat.Check(fmt.Errorf("%s: only %d of %d service accounts done after 15 minutes", name, len(finished), want))
	}
	res := result{name: name, took: time.Since(begin)}
	if profiled {
		<-cpuDone
	}
	writesAfter, byResource := settledWrites(client)
	res.writes = writesAfter - writesBefore
	res.byResource = perNamespaceWrites(byBefore, byResource, *count)
	mu.Lock()
	var lat []time.Duration
	for key, t := range finished {
		lat = append(lat, t.Sub(seen[key]))
	}
	mu.Unlock()
	res.p50, res.p99 = benchstat.P(lat, 50), benchstat.P(lat, 99)
	heapAfter, rssAfter := memory(env, client)
	res.heapMiB, res.rssMiB = heapAfter-heapBefore, rssAfter-rssBefore
	if profiled {
		res.heapProfile = filepath.Join(*profile, "heap.pprof")
		heap, err := client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/heap").Param("gc", "1").DoRaw(ctx)
		benchstat.Check(err)
		benchstat.Check(os.WriteFile(res.heapProfile, heap, 0o644))
		res.heapTop = pprofTop(res.heapProfile, "-sample_index=inuse_space")
		res.cpuProfile = filepath.Join(*profile, "cpu.pprof")
		benchstat.Check(os.WriteFile(res.cpuProfile, cpu, 0o644))
		res.cpuTop = pprofTop(res.cpuProfile)
		secrets, err := client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: "pullgate.dev/registry-pull-secret=true"})
		benchstat.Check(err)
		for _, s := range secrets.Items {
			if strings.HasPrefix(s.Namespace, prefix) {
				res.secrets++
			}
		}
	}
	fmt.Printf("%s: %d namespaces, %d accounts done in %s (p50 %s, p99 %s per account)\n", name, *count, want,
		res.took.Round(100*time.Millisecond), res.p50.Round(10*time.Millisecond), res.p99.Round(10*time.Millisecond))
	return res
}

// unlimited is a client with no client-side rate limit.
func unlimited(cfg *rest.Config) kubernetes.Interface {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	client, err := kubernetes.NewForConfig(cfg)
	benchstat.Check(err)
	return client
}

// memory is the process's Go heap in use right after a collection (the heap profile
// asks for one) and its resident set, in MiB: `up` is one process, so the embedded
// API server's /metrics and /debug/pprof speak for all of it.
func memory(env *harness.Env, client kubernetes.Interface) (heap, rss float64) {
	ctx := context.Background()
	_, err := client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/heap").Param("gc", "1").DoRaw(ctx)
	benchstat.Check(err)
	metrics, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	benchstat.Check(err)
	for _, line := range strings.Split(string(metrics), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			heap = f / (1 << 20)
		}
	}
	return heap, rssMiB(env.Pid())
}

// killed creates the burst's namespaces on an up that is SIGKILLed when half of them
// are created and started again, then waits until every account of every namespace
// has exactly one registry pull secret, linked once — and says so, or how many are
// duplicated or missing when it gives up.
func killed() {
	// client-go narrates the connections the SIGKILL cuts; the count below says what
	// matters.
	klog.SetOutput(io.Discard)
	klog.LogToStderr(false)
	env, err := harness.Start(harness.Options{})
	benchstat.Check(err)
	defer env.Close()
	ctx := context.Background()
	client := unlimited(env.AdminConfig)
	var next atomic.Int64
	var restart sync.Once
	var wg sync.WaitGroup
	begin := time.Now()
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(*count); i = next.Add(1) {
				if i == int64(*count)/2 {
					restart.Do(func() {
						benchstat.Check(env.Kill())
						benchstat.Check(env.Restart())
					})
				}
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("killed-", i)}}
				for { // while up is down and starting again
					_, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
					if err == nil || apierrors.IsAlreadyExists(err) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	var duplicated, missing int
	deadline := time.Now().Add(15 * time.Minute)
	for {
		duplicated, missing = pullSecretCount(ctx, client)
		if duplicated == 0 && missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	fmt.Printf("\nSIGKILL half way through a burst of %d namespaces, up started again: %d accounts with a duplicated pull secret, %d without exactly one linked (goal: 0 and 0; converged %s after the first namespace)\n",
		*count, duplicated, missing, time.Since(begin).Round(time.Second))
}

// pullSecretCount counts, over the accounts of the killed run's namespaces, those with
// more than one registry pull secret and those whose one secret is missing or not
// linked exactly once.
func pullSecretCount(ctx context.Context, client kubernetes.Interface) (duplicated, missing int) {
	secrets, err := client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: "pullgate.dev/registry-pull-secret=true"})
	benchstat.Check(err)
	accounts, err := client.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{})
	benchstat.Check(err)
	per := map[string][]string{}
	for _, s := range secrets.Items {
		per[s.Namespace+"/"+s.Annotations[corev1.ServiceAccountNameKey]] = append(per[s.Namespace+"/"+s.Annotations[corev1.ServiceAccountNameKey]], s.Name)
	}
	byKey := map[string]*corev1.ServiceAccount{}
	for i := range accounts.Items {
		byKey[accounts.Items[i].Namespace+"/"+accounts.Items[i].Name] = &accounts.Items[i]
	}
	for i := 1; i <= *count; i++ {
		for _, name := range []string{"default", "builder", "deployer"} {
			key := fmt.Sprintf("killed-%d/%s", i, name)
			got := per[key]
			if len(got) > 1 {
				duplicated++
				continue
			}
			sa := byKey[key]
			if len(got) == 0 || sa == nil {
				missing++
				continue
			}
			refs := 0
			for _, r := range sa.ImagePullSecrets {
				if r.Name == got[0] {
					refs++
				}
			}
			if refs != 1 {
				missing++
			}
		}
	}
	return duplicated, missing
}

// writeWhatPullgateWrites is, for bare Kubernetes, what pullgate's controllers write
// in namespace ns: accounts builder and deployer, the three role bindings, a secret of
// a pull secret's size per account, each account linked to its secret.
func writeWhatPullgateWrites(ctx context.Context, client kubernetes.Interface, ns string) {
	for _, b := range []struct{ name, role, sa string }{{"system:image-pullers", "system:image-puller", ""}, {"system:image-builders", "system:image-builder", "builder"}, {"system:deployers", "system:deployer", "deployer"}} {
		subject := rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:" + ns}
		if b.sa != "" {
			subject = rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: b.sa, Namespace: ns}
		}
		_, err := client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: b.name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: b.role}, Subjects: []rbacv1.Subject{subject}}, metav1.CreateOptions{})
		benchstat.Check(err)
	}
	for _, name := range []string{"builder", "deployer", "default"} {
		if name != "default" {
			_, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			benchstat.Check(err)
		}
		token := strings.Repeat("t", 1100) // a bound token's length
		entry := fmt.Sprintf(`{"username":"serviceaccount","password":%q,"email":"serviceaccount@example.org","auth":%q}`, token, token+token[:370])
		_, err := client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-dockercfg",
			Labels: map[string]string{"pullgate.dev/registry-pull-secret": "true"}, Annotations: map[string]string{corev1.ServiceAccountNameKey: name,
				"pullgate.dev/token-sha256": strings.Repeat("0", 64), "pullgate.dev/token-issued": time.Now().Format(time.RFC3339),
				"pullgate.dev/token-expires": time.Now().Format(time.RFC3339), "pullgate.dev/token-key-id": strings.Repeat("k", 43),
				"pullgate.dev/registry-names": "127.0.0.1:5000,localhost:5000"}},
			Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: []byte(`{"127.0.0.1:5000":` + entry + `,"localhost:5000":` + entry + `}`)}}, metav1.CreateOptions{})
		benchstat.Check(err)
		for {
			sa, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				time.Sleep(10 * time.Millisecond) // default: the controller manager makes it
				continue
			}
			sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name + "-dockercfg"})
			sa.Secrets = append(sa.Secrets, corev1.ObjectReference{Name: name + "-dockercfg"})
			if _, err := client.CoreV1().ServiceAccounts(ns).Update(ctx, sa, metav1.UpdateOptions{}); err == nil {
				break
			}
		}
	}
}

// settledWrites is writes once they have stopped changing for 3 s: what a namespace
// costs includes what is written after its accounts are linked (role bindings).
func settledWrites(client kubernetes.Interface) (float64, map[string]float64) {
	total, by := writes(client)
	for stable := 0; stable < 3; {
		time.Sleep(time.Second)
		t, b := writes(client)
		if t-total < 5 { // leases and the like
			stable++
		} else {
			stable = 0
		}
		total, by = t, b
	}
	return total, by
}

// writes sums apiserver_request_total over the verbs that write and succeeded, in
// all and by resource.
func writes(client kubernetes.Interface) (float64, map[string]float64) {
	metrics, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	benchstat.Check(err)
	total, by := 0.0, map[string]float64{}
	for _, line := range strings.Split(string(metrics), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		labels, value, _ := strings.Cut(strings.TrimPrefix(line, "apiserver_request_total{"), "} ")
		l := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			l[k] = strings.Trim(v, `"`)
		}
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE", "APPLY":
		default:
			continue
		}
		if !strings.HasPrefix(l["code"], "2") {
			continue // a conflict or a refusal writes nothing
		}
		f, _ := strconv.ParseFloat(value, 64)
		total += f
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		by[key] += f
	}
	return total, by
}

// perNamespaceWrites is each resource's writes during the burst, per namespace,
// largest first.
func perNamespaceWrites(before, after map[string]float64, n int) string {
	type kv struct {
		k string
		v float64
	}
	var list []kv
	for k, v := range after {
		list = append(list, kv{k, v - before[k]})
	}
	slices.SortFunc(list, func(a, b kv) int { return cmp.Compare(b.v, a.v) })
	var b strings.Builder
	for _, e := range list {
		if per := e.v / float64(n); per >= 0.05 {
			fmt.Fprintf(&b, "  %-40s %6.2f\n", e.k, per)
		}
	}
	return b.String()
}

// pprofTop is the first lines of go tool pprof -top of a profile.
func pprofTop(file string, args ...string) string {
	out, err := exec.Command("go", append(append([]string{"tool", "pprof", "-top", "-nodecount=12"}, args...), file)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("  (go tool pprof: %v: %s)\n", err, out)
	}
	lines := strings.Split(string(bytes.TrimSpace(out)), "\n")
	var b strings.Builder
	for _, l := range lines {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// rssMiB is a process's resident memory (VmRSS), in MiB.
func rssMiB(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	benchstat.Check(err)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
