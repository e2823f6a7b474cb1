package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// component is one embedded server running in a goroutine. Done is closed when it
// returns, so any number of waiters can watch it.
type component struct {
	name string
	done chan struct{}
	err  error
}

func goRun(name string, run func() error) *component {
	c := &component{name: name, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = run()
	}()
	return c
}

// exitErr describes why a component returned, for a component that was not asked to stop.
func (c *component) exitErr() error {
	if c.err == nil {
		return fmt.Errorf("%s exited", c.name)
	}
	return fmt.Errorf("%s: %w", c.name, c.err)
}

// waitStopped waits at most max for c to return after its context was cancelled.
func (c *component) waitStopped(log *slog.Logger, max time.Duration) {
	if c == nil {
		return
	}
	select {
	case <-c.done:
		if c.err != nil && !errors.Is(c.err, context.Canceled) {
			log.Debug("component stopped", "component", c.name, "err", c.err)
		}
	case <-time.After(max):
		log.Warn("component did not stop in time; leaving it", "component", c.name, "waited", max)
	}
}
