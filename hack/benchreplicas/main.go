// Command benchreplicas measures pullgate replicated as on a cluster, in one run on
// this machine: blob GET throughput through 1 and 3 `registry serve` replicas on S3
// (the Versity S3 Gateway) with the CPU seconds each replica spends per GB served (the number that
// predicts scaling: on 2 shared cores more replicas cannot go faster), blob GETs
// proxied by the registry beside redirected to S3 with presigned URLs, and the time
// a controller replica takes to lead after the leader is killed (goal < 15 s).
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

func main() {
	blobMiB := flag.Int("blob-mib", 256, "blob size")
	rounds := flag.Int("rounds", 4, "blob GETs per client per case")
	failovers := flag.Int("failovers", 3, "leader kills")
	flag.Parse()
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "benchreplicas-")
	check(err)
	defer os.RemoveAll(tmp)

	env, err := harness.Start(harness.Options{ExtraArgs: []string{"--leader-elect=false"}})
	check(err)
	defer env.Close()
	s3, err := harness.StartS3(tmp, "bench")
	check(err)
	defer s3.Stop()

	var replicas []*harness.Process
	var addrs []string
	for i := range 4 {
		port, err := harness.FreePort()
		check(err)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		extra := s3.CredentialParams()
		if i == 3 {
			extra = append(extra, "--storage-redirect")
		}
		p, err := harness.StartRegistryReplica(env.Kubeconfig, tmp+"/r"+strconv.Itoa(i), addr, addr, s3, extra...)
		check(err)
		defer p.Stop()
		replicas, addrs = append(replicas, p), append(addrs, addr)
	}
	balancer, err := harness.StartBalancer(addrs[:3]...)
	check(err)
	defer balancer.Close()

	ns, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
	check(err)
	token, err := env.Account(ctx, ns.Name, "pusher", "admin")
	check(err)
	host := "localhost:" + strings.Split(addrs[0], ":")[1]
	cfgDir, err := os.MkdirTemp(tmp, "docker-")
	check(err)
	data, err := credentials.SetAuth(nil, host, credentials.Credential{Username: "bench", Password: token}, credentials.Docker)
	check(err)
	check(os.WriteFile(cfgDir+"/config.json", data, 0o600))
	blob := make([]byte, *blobMiB<<20)
	_, _ = rand.Read(blob)
	image := host + "/" + ns.Name + "/blob:v1"
	_, err = harness.PushFile(ctx, cfgDir, image, blob)
	check(err)
	manifest, err := harness.Crane(ctx, cfgDir, "manifest", image)
	check(err)
	var m struct {
		Layers []struct {
			Digest string
			Size   int64
		}
	}
	check(json.Unmarshal([]byte(manifest), &m))
	path := "/v2/" + ns.Name + "/blob/blobs/" + m.Layers[0].Digest
	registryToken, err := harness.RegistryToken(ctx, addrs[0], token, "repository:"+ns.Name+"/blob:pull")
	check(err)

	fmt.Printf("blob GETs of %d MiB from S3 (the Versity S3 Gateway on this machine), %d per client; CPU-s/GB is each serving replica's CPU per GB it served\n", *blobMiB, *rounds)
	cases := []struct {
		name    string
		targets []string
		pids    []int
		clients int
	}{
		{"1 replica, 3 clients, proxied", addrs[:1], []int{replicas[0].Pid()}, 3},
		{"3 replicas behind a balancer, 3 clients, proxied", []string{balancer.Addr()}, []int{replicas[0].Pid(), replicas[1].Pid(), replicas[2].Pid()}, 3},
		{"1 replica, 1 client, proxied (anchor)", addrs[:1], []int{replicas[0].Pid()}, 1},
		{"1 replica, 1 client, --storage-redirect", addrs[3:], []int{replicas[3].Pid()}, 1},
	}
	for _, c := range cases {
		before := cpuSeconds(c.pids)
		begin := time.Now()
		var wg sync.WaitGroup
		for i := range c.clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range *rounds {
					get("http://"+c.targets[i%len(c.targets)]+path, registryToken, m.Layers[0].Size)
				}
			}()
		}
		wg.Wait()
		took := time.Since(begin).Seconds()
		gb := float64(int64(c.clients**rounds)*m.Layers[0].Size) / 1e9
		cpu := cpuSeconds(c.pids) - before
		fmt.Printf("  %-50s %6.0f MB/s   %.2f CPU-s/GB (%d replica(s), %.1f CPU-s in all)\n", c.name, gb*1000/took, cpu/gb, len(c.pids), cpu)
	}

	fmt.Printf("leader fail-over: kill -9 of the leading controller of 2, time until the other leads (goal < 15 s)\n")
	var controllers []*harness.Controllers
	start := func() {
		c, err := harness.StartControllers(env.Kubeconfig, host)
		check(err)
		controllers = append(controllers, c)
	}
	start()
	start()
	var times []time.Duration
	for range *failovers {
		leader, err := harness.WaitForLeader(controllers, time.Minute)
		check(err)
		begin := time.Now()
		controllers[leader].Kill()
		controllers[leader] = nil
		_, err = harness.WaitForLeader(controllers, time.Minute)
		check(err)
		times = append(times, time.Since(begin))
		start()
	}
	for _, p := range controllers {
		if p != nil {
			p.Stop()
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	fmt.Printf("  %v (lease %s, retry %s: at most ~12 s by construction)\n", times, "10s", "2s")
}

func get(url, token string, size int64) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req) // follows a redirect to S3
	check(err)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	check(err)
	if resp.StatusCode != http.StatusOK || n != size {
		panic(fmt.Sprintf("GET %s: %s, %d bytes", url, resp.Status, n))
	}
}

// cpuSeconds is the user + system CPU time of the processes (/proc/PID/stat, 100 Hz).
func cpuSeconds(pids []int) float64 {
	var total float64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		check(err)
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		total += (utime + stime) / 100
	}
	return total
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreplicas:", err)
		os.Exit(1)
	}
}
