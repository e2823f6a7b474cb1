package scaleout

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// An online prune never loses an acknowledged push on S3 through three replicas: 8
// clients push, re-tag, copy, reuse deleted layers and delete through the balancer
// for 90 s while every replica prunes every 3 s (they take turns on the Lease) and
// `pullgate adm prune --confirm` runs in a loop against the same bucket (every third
// one killed part way), all keeping nothing for its age. Then every acknowledged, undeleted tag pulls whole, and every
// tag an ImageStream shows pulls.
func TestOnlinePruneThroughReplicasOnS3LosesNoAcknowledgedPush(t *testing.T) {
	ctx := harness.Context(t, 8*time.Minute)
	c := startCluster(t, "--prune-interval", "3s", "--prune-keep-younger-than", "0s")
	ns := env.Namespace(t, ctx, "stress")
	token, err := env.Account(ctx, ns, "pusher", "edit")
	if err != nil {
		t.Fatal(err)
	}
	cfg := harness.DockerConfigFor(t, c.host, credentials.Credential{Username: "pullgate", Password: token})
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		_, err = harness.PushFile(ctx, cfg, c.host+"/"+ns+"/ready:v1", []byte("the role reached every replica"))
		return err == nil
	}) {
		t.Fatalf("the first push through the balancer: %v", err)
	}
	pruneArgs := append(append(c.s3.StorageParams(), c.s3.CredentialParams()...), "--kubeconfig", env.Kubeconfig)
	st, prunes := harness.StressWhilePruning(t, ctx, harness.StressOptions{Registry: c.host, Namespace: ns, Token: token,
		Pushers: 8, Repositories: 3, Duration: 90 * time.Second}, pruneArgs...)
	interval := 0
	for i, addr := range c.addrs {
		n := replicaMetric(t, ctx, addr, "pullgate_registry_prune_duration_seconds_count")
		t.Logf("replica %d ran %d interval prunes", i, n)
		interval += n
	}
	t.Logf("%d prunes by the replicas' --prune-interval, %d by adm prune", interval, prunes.Runs)
	if interval < 3 || prunes.Runs < 2 {
		t.Errorf("%d interval prunes and %d adm prunes ran during the load; want at least 3 and 2", interval, prunes.Runs)
	}
	if bad := st.StreamsUnservable(ctx, env); len(bad) > 0 {
		t.Errorf("%d ImageStream tags the registry does not serve:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// replicaMetric reads a counter a replica exports on /metrics.
func replicaMetric(t *testing.T, ctx context.Context, addr, name string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			n, _ := strconv.ParseFloat(f[1], 64)
			return int(n)
		}
	}
	return 0
}
