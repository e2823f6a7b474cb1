package harness

import (
	"context"
	"time"
)

// Eventually polls cond every 50 ms until it returns true or timeout passes, and
// reports whether it did. It waits on a condition, never for a fixed time.
func Eventually(ctx context.Context, timeout time.Duration, cond func(context.Context) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(ctx) {
			return true
		}
		select {
		case <-ctx.Done():
			return cond(context.Background())
		case <-tick.C:
		}
	}
}
