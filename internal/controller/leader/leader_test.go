package leader

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/kubernetes/fake"
)

// Of two replicas exactly one runs the work; when it stops, it releases the Lease and
// the other takes over.
func TestOneLeaderThenHandOver(t *testing.T) {
	client := fake.NewClientset()
	var running atomic.Int32
	var most atomic.Int32
	work := func(ctx context.Context) {
		n := running.Add(1)
		if n > most.Load() {
			most.Store(n)
		}
		<-ctx.Done()
		running.Add(-1)
	}
	electors := make([]*Elector, 2)
	cancels := make([]context.CancelFunc, 2)
	stopped := make([]chan struct{}, 2)
	for i := range electors {
		metrics := prometheus.NewRegistry()
		electors[i] = New(Config{Client: client, Namespace: "pullgate-system", Name: ControllersLease, Identity: []string{"a", "b"}[i],
			Metrics: metrics, Log: slog.New(slog.DiscardHandler)})
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i], stopped[i] = cancel, make(chan struct{})
		go func() { _ = electors[i].Run(ctx, work); close(stopped[i]) }()
		defer cancel()
	}
	first := waitForLeader(t, electors)
	other := 1 - first
	if running.Load() != 1 {
		t.Fatalf("%d replicas run the work", running.Load())
	}
	if got := testutil.ToFloat64(electors[first].gauge); got != 1 {
		t.Errorf("leader's pullgate_leader = %v", got)
	}
	if !strings.Contains(electors[other].Status(), electors[first].Identity()) {
		waitUntil(t, func() bool { return strings.Contains(electors[other].Status(), electors[first].Identity()) })
	}
	if err := electors[first].Check(httptest.NewRequest("GET", "/healthz", nil)); err != nil {
		t.Errorf("the leader's health check fails: %v", err)
	}

	begin := time.Now()
	cancels[first]()
	<-stopped[first]
	waitUntil(t, func() bool { return electors[other].Leading() })
	t.Logf("hand-over after a clean stop took %s", time.Since(begin).Round(time.Millisecond))
	if most.Load() != 1 {
		t.Errorf("at some point %d replicas ran the work at once", most.Load())
	}
	if got := testutil.ToFloat64(electors[first].gauge); got != 0 {
		t.Errorf("stopped replica's pullgate_leader = %v", got)
	}
}

func waitForLeader(t *testing.T, electors []*Elector) int {
	t.Helper()
	var leader int
	waitUntil(t, func() bool {
		for i, e := range electors {
			if e.Leading() {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(LeaseDuration + 2*RetryPeriod)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
