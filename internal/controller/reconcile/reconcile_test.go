package reconcile

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A key that fails is retried until it succeeds; one that asks to be looked at again
// comes back; Run returns only once its workers have stopped.
func TestLoop(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	var running atomic.Int32
	again := make(chan struct{})
	l := New("test", func(ctx context.Context, key string) (time.Duration, error) {
		running.Add(1)
		defer running.Add(-1)
		mu.Lock()
		calls[key]++
		n := calls[key]
		mu.Unlock()
		switch {
		case key == "flaky" && n < 3:
			return 0, errors.New("not yet")
		case key == "later" && n == 1:
			return 10 * time.Millisecond, nil
		case key == "later" && n == 2:
			close(again)
		}
		return 0, nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx, 3) }()
	for _, k := range []string{"flaky", "later", "once"} {
		l.Add(k)
	}
	select {
	case <-again:
	case <-time.After(10 * time.Second):
		t.Fatal("a key that asked to be looked at again never came back")
	}
	deadline := time.After(10 * time.Second)
	for {
		mu.Lock()
		flaky := calls["flaky"]
		mu.Unlock()
		if flaky >= 3 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("a failing key was reconciled %d times, want retries until it succeeds", flaky)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := running.Load(); n != 0 {
		t.Errorf("Run returned with %d reconciles still running", n)
	}
	if calls["once"] != 1 {
		t.Errorf("a key that succeeded was reconciled %d times", calls["once"])
	}
}
