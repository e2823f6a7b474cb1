package services

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"

	"pullgate.dev/pullgate/internal/controller/leader"
	"pullgate.dev/pullgate/internal/registry"
)

// Unset, the registry is localhost on the listener's port and answers to that name;
// set, what was given is used as given.
func TestRegistryNames(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5123}
	host, names := Config{}.registryNames(addr)
	if host != "localhost:5123" || !slices.Equal(names, []string{"localhost:5123"}) {
		t.Errorf("defaults: %s %v", host, names)
	}
	host, names = Config{RegistryHost: "r.example", RegistryNames: []string{"r.example", "10.0.0.5:5000"}}.registryNames(addr)
	if host != "r.example" || len(names) != 2 {
		t.Errorf("given: %s %v", host, names)
	}
	host, names = Config{RegistryHost: "r.example"}.registryNames(addr)
	if !slices.Equal(names, []string{"r.example"}) {
		t.Errorf("host alone: %s %v", host, names)
	}
}

// Unset, blobs are kept on the filesystem under the data directory; a configured
// storage is used as it is.
func TestStorage(t *testing.T) {
	if got := (Config{}).storage("/d/registry"); got.Type() != "filesystem" || got.Parameters()["rootdirectory"] != filepath.Join("/d/registry", "storage") {
		t.Errorf("default storage %v", got)
	}
	s3 := configuration.Storage{"s3": configuration.Parameters{"bucket": "b"}}
	if got := (Config{Storage: s3}).storage("/d/registry"); got.Type() != "s3" {
		t.Errorf("configured storage %v", got)
	}
}

// fakeRegistry counts maintenance.
type fakeRegistry struct {
	mu                 sync.Mutex
	reconciles, prunes int
	pruneErr           error
	reconciled, pruned chan struct{}
}

func (f *fakeRegistry) Reconcile(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reconciles++
	if f.reconciles == 1 {
		close(f.reconciled)
	}
	return nil
}

func (f *fakeRegistry) Prune(context.Context, registry.PruneOptions) (registry.PruneReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prunes++
	if f.prunes == 2 {
		close(f.pruned)
	}
	return registry.PruneReport{}, f.pruneErr
}

// maintain reconciles at once and prunes every PruneInterval; without one it never
// prunes. A prune another replica holds is logged as skipped, not as a failure.
func TestMaintain(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	f := &fakeRegistry{reconciled: make(chan struct{}), pruned: make(chan struct{}), pruneErr: fmt.Errorf("storage: %w", leader.ErrHeld)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		maintain(ctx, f, Config{PruneInterval: time.Millisecond, ReconcileInterval: time.Hour, Log: log})
	}()
	<-f.reconciled
	<-f.pruned
	cancel()
	<-done
	if !strings.Contains(logs.String(), "prune skipped") || strings.Contains(logs.String(), "prune failed") {
		t.Errorf("logs:\n%s", logs.String())
	}

	none := &fakeRegistry{reconciled: make(chan struct{}), pruned: make(chan struct{})}
	ctx, cancel = context.WithCancel(context.Background())
	maintain(ctx, none, Config{ReconcileInterval: time.Hour, Log: log})
	<-none.reconciled
	cancel()
	none.mu.Lock()
	defer none.mu.Unlock()
	if none.prunes != 0 {
		t.Errorf("%d prunes without a prune interval", none.prunes)
	}
}
