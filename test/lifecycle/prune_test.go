package lifecycle

import (
	"strings"
	"testing"
	"time"

	"pullgate.dev/pullgate/internal/harness"
)

// An online prune never loses an acknowledged push: 8 clients push images that share
// base layers, re-tag, copy between repositories, upload again layers of images they
// deleted, and delete tags and manifests, for 90 s, while `up` prunes every 3 s and
// `pullgate adm prune --confirm` runs in a loop (every third one killed part way),
// both keeping nothing for its age (--keep-younger-than 0s). Then every acknowledged,
// undeleted tag pulls whole with every blob's digest right, and every tag an
// ImageStream shows pulls.
func TestOnlinePruneLosesNoAcknowledgedPush(t *testing.T) {
	e, ctx, ns, token := startWithProject(t, harness.Options{ExtraArgs: []string{"--prune-interval", "3s", "--prune-keep-younger-than", "0s"}}, "stress")
	push(t, ctx, e, token, e.RegistryHost+"/"+ns+"/ready:v1", []byte("the role reached the token service"))
	st, prunes := harness.StressWhilePruning(t, ctx, harness.StressOptions{Registry: e.RegistryHost, Namespace: ns, Token: token,
		Pushers: 8, Repositories: 3, Duration: 90 * time.Second}, "--data-dir", e.DataDir, "--kubeconfig", e.Kubeconfig)
	interval, err := e.Metric("pullgate_registry_prune_duration_seconds_count")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d prunes by up --prune-interval, %d by adm prune", int(interval), prunes.Runs)
	if interval < 3 || prunes.Runs < 2 {
		t.Errorf("%d interval prunes and %d adm prunes ran during the load; want at least 3 and 2", int(interval), prunes.Runs)
	}
	if bad := st.StreamsUnservable(ctx, e); len(bad) > 0 {
		t.Errorf("%d ImageStream tags the registry does not serve:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}
