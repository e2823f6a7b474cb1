// Command benchprune is the long run of the online prune's stress test (make test
// runs 90 s of it): 8 clients push images sharing base layers, re-tag, copy between
// repositories, upload again layers of images they deleted, and delete tags and
// manifests for -duration (10 minutes) while `up --prune-interval 3s
// --prune-keep-younger-than 0s` prunes and `pullgate adm prune --confirm
// --keep-younger-than 0s` runs in a loop; then every acknowledged, undeleted tag is
// pulled whole and its blobs' digests checked (goal: 0 lost, 0 corrupt). Its anchor,
// in the same run: the same load for -anchor with no prune at all. It reports
// acknowledged operations per second with and without pruning, and what the prunes
// reclaimed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/docker/go-units"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long the load runs while prunes run")
	anchor := flag.Duration("anchor", 2*time.Minute, "how long the same load runs with no prune")
	flag.Parse()
	ctx := context.Background()

	fmt.Printf("online prune under load: 8 pushers, 3 repositories, --keep-younger-than 0s (anchor: the same load, no prune)\n")
	base := load(ctx, nil, *anchor, false)
	pruned := load(ctx, []string{"--prune-interval", "3s", "--prune-keep-younger-than", "0s"}, *duration, true)
	fmt.Printf("  acknowledged operations/s  %8.1f   anchor, no prune: %8.1f\n", pruned.rate, base.rate)
	fmt.Printf("  acknowledged operations    %8d   (%s)\n", pruned.acknowledged, pruned.summary)
	fmt.Printf("  tags pulled and checked    %8d   lost %d, corrupt %d (goal 0, 0); anchor: %d tags, lost %d, corrupt %d\n",
		pruned.live, pruned.lost, pruned.corrupt, base.live, base.lost, base.corrupt)
	fmt.Printf("  prunes                     %8d   (%d adm prune, %d in up)\n", pruned.admPrunes+pruned.upPrunes, pruned.admPrunes, pruned.upPrunes)
	fmt.Printf("  reclaimed                  %8s   (%s by adm prune, %s in up)\n",
		units.BytesSize(float64(pruned.admBytes+pruned.upBytes)), units.BytesSize(float64(pruned.admBytes)), units.BytesSize(float64(pruned.upBytes)))
	if pruned.lost+pruned.corrupt+base.lost+base.corrupt > 0 {
		os.Exit(1)
	}
}

type result struct {
	rate                float64
	acknowledged, live  int
	lost, corrupt       int
	summary             string
	admPrunes, upPrunes int
	admBytes, upBytes   int64
}

// load runs the stress load against a fresh `up` with upArgs, with adm prune looping
// when prune is set.
func load(ctx context.Context, upArgs []string, d time.Duration, prune bool) result {
	env, err := harness.Start(harness.Options{ExtraArgs: upArgs})
	check(err)
	defer env.Close()
	ns := "stress"
	_, err = env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	check(err)
	token, err := env.Account(ctx, ns, "pusher", "edit")
	check(err)
	cfg, err := env.DockerConfig(env.DataDir, token)
	check(err)
	defer os.RemoveAll(cfg)
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		_, err = harness.PushFile(ctx, cfg, env.RegistryHost+"/"+ns+"/ready:v1", []byte("ready"))
		return err == nil
	}) {
		check(fmt.Errorf("the first push: %w", err))
	}

	var r result
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		if !prune {
			done <- nil
			return
		}
		l, err := harness.LoopPrunes(loopCtx, 0, "--data-dir", env.DataDir, "--kubeconfig", env.Kubeconfig)
		r.admPrunes, r.admBytes = l.Runs, l.Reclaimed
		done <- err
	}()
	begin := time.Now()
	st, err := harness.RunStress(ctx, harness.StressOptions{Registry: env.RegistryHost, Namespace: ns, Token: token,
		Pushers: 8, Repositories: 3, Duration: d})
	took := time.Since(begin)
	stop()
	check(err)
	check(<-done)
	r.acknowledged, r.summary = st.Acknowledged(), st.Summary()
	r.rate = float64(r.acknowledged) / took.Seconds()
	lost, corrupt := st.Verify(ctx)
	r.live, r.lost, r.corrupt = len(st.Live()), len(lost), len(corrupt)
	for _, l := range append(lost, corrupt...) {
		fmt.Fprintln(os.Stderr, "benchprune:", l)
	}
	if prune {
		n, err := env.Metric("pullgate_registry_prune_duration_seconds_count")
		check(err)
		b, err := env.Metric("pullgate_registry_prune_reclaimed_bytes_total")
		check(err)
		r.upPrunes, r.upBytes = int(n), int64(b)
	}
	return r
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchprune:", err)
		os.Exit(1)
	}
}
