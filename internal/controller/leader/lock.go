package leader

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// PruneLease is the Lease that prunes of the registry's storage take, one at a time.
const PruneLease = "pullgate-registry-prune"

// ErrHeld means another process holds the Lease.
var ErrHeld = errors.New("the lease is held by another process")

// waitRetryPeriod is how often a Hold that waits its turn tries the Lease: often, so
// that it takes the Lease as soon as it is released, before processes that take it
// only when it is free (the registries' periodic prunes) come round again.
const waitRetryPeriod = 250 * time.Millisecond

// clockSkew is how far another process's clock may be from this one's when it judges
// whether the holder of a Lease is still alive.
const clockSkew = 30 * time.Second

// Lock is a Lease held for one piece of work at a time — a prune — rather than a
// standing election: Hold takes it, runs the work, and releases it.
type Lock struct {
	Client kubernetes.Interface
	// Namespace and Name are the Lease's.
	Namespace, Name string
	// Identity names this process in the Lease; empty means DefaultIdentity.
	Identity string
}

// Hold runs fn while holding the Lease. fn's context ends if the Lease is lost (not
// renewed within RenewDeadline); Hold returns when fn has. Without wait, a Lease held
// by another returns ErrHeld at once (naming the holder); with it, Hold waits its turn.
func (l Lock) Hold(ctx context.Context, wait bool, fn func(context.Context) error) error {
	identity := l.Identity
	if identity == "" {
		identity = DefaultIdentity()
	}
	if !wait {
		holder, held, err := l.holder(ctx)
		if err != nil {
			return err
		}
		if held {
			return fmt.Errorf("%w: %s/%s is held by %s", ErrHeld, l.Namespace, l.Name, holder)
		}
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, l.Namespace, l.Name,
		l.Client.CoreV1(), l.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		started = make(chan struct{})
		done    = make(chan struct{})
		workErr error
	)
	retry := RetryPeriod
	if wait {
		retry = waitRetryPeriod
	}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: LeaseDuration, RenewDeadline: RenewDeadline, RetryPeriod: retry,
		ReleaseOnCancel: true, Name: l.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(term context.Context) {
				defer close(done)
				defer stop() // the work is over: the Lease is released
				close(started)
				workErr = fn(term)
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return err
	}
	if !wait {
		// Another process may have taken the Lease since it was looked at: give up
		// after two tries.
		go func() {
			select {
			case <-started:
			case <-time.After(3 * RetryPeriod):
				stop()
			case <-runCtx.Done():
			}
		}()
	}
	elector.Run(runCtx)
	select {
	case <-started:
		<-done
		return workErr
	default:
		if err := ctx.Err(); err != nil {
			return err
		}
		holder, _, _ := l.holder(ctx)
		return fmt.Errorf("%w: %s/%s is held by %s", ErrHeld, l.Namespace, l.Name, holder)
	}
}

// Held reports whether some process holds the Lease now: one is named in it and
// renewed it within its duration (and clockSkew) of this process's clock.
func (l Lock) Held(ctx context.Context) (bool, error) {
	_, held, err := l.holder(ctx)
	return held, err
}

func (l Lock) holder(ctx context.Context) (string, bool, error) {
	lease, err := l.Client.CoordinationV1().Leases(l.Namespace).Get(ctx, l.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	spec := lease.Spec
	if spec.HolderIdentity == nil || *spec.HolderIdentity == "" {
		return "", false, nil
	}
	duration := LeaseDuration
	if spec.LeaseDurationSeconds != nil {
		duration = time.Duration(*spec.LeaseDurationSeconds) * time.Second
	}
	renewed := time.Time{}
	if spec.RenewTime != nil {
		renewed = spec.RenewTime.Time
	} else if spec.AcquireTime != nil {
		renewed = spec.AcquireTime.Time
	}
	return *spec.HolderIdentity, time.Since(renewed) < duration+clockSkew, nil
}
