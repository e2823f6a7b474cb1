// Package leader runs work on exactly one of any number of replicas at a time, elected
// on a Lease with client-go's leaderelection: the other replicas wait, and take over
// once the dead leader's Lease has run out (at once when it stops cleanly, since it
// releases the Lease).
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Timing of the election: a dead leader is replaced LeaseDuration after another
// replica last saw its Lease renewed, at that replica's next try. Tries come every
// RetryPeriod plus client-go's jitter (up to 1.2 × RetryPeriod more), so typically
// ~12 s after the death and, at worst, LeaseDuration + 2 × 2.2 × RetryPeriod (18.8 s)
// plus the API server's latency.
const (
	LeaseDuration = 10 * time.Second
	RenewDeadline = 8 * time.Second
	RetryPeriod   = 2 * time.Second
)

// ControllersLease is the Lease pullgate's controllers are elected on.
const ControllersLease = "pullgate-controllers"

// Config is one election.
type Config struct {
	Client kubernetes.Interface
	// Namespace and Name are the Lease's.
	Namespace, Name string
	// Identity names this replica in the Lease; empty means host name + a random ID.
	Identity string
	Metrics  prometheus.Registerer
	Log      *slog.Logger
}

// Elector runs work while this replica leads.
type Elector struct {
	cfg      Config
	leader   atomic.Value // string: the last observed leader
	leading  atomic.Bool
	term     sync.Mutex
	watchdog *leaderelection.HealthzAdaptor
	gauge    prometheus.Gauge
}

// New prepares an election; nothing happens until Run.
func New(cfg Config) *Elector {
	if cfg.Identity == "" {
		cfg.Identity = DefaultIdentity()
	}
	e := &Elector{cfg: cfg, watchdog: leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)}
	e.leader.Store("")
	e.gauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "pullgate", Name: "leader",
		Help:        "1 while this replica leads the election named by lease (it runs the controllers), else 0.",
		ConstLabels: prometheus.Labels{"lease": cfg.Name, "identity": cfg.Identity},
	})
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(e.gauge)
	}
	return e
}

// DefaultIdentity is the host name (a pod's name) and a random ID, so two processes
// on one host never share an identity.
func DefaultIdentity() string {
	host, _ := os.Hostname()
	return host + "_" + uuid.NewString()
}

// Identity is this replica's name in the Lease.
func (e *Elector) Identity() string { return e.cfg.Identity }

// Leader is the last observed leader's identity, "" before one is seen.
func (e *Elector) Leader() string { return e.leader.Load().(string) }

// Leading reports whether this replica leads now.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Check fails when this replica believes it leads but has not renewed its Lease for
// longer than it may: a stuck leader, for a liveness probe.
func (e *Elector) Check(r *http.Request) error { return e.watchdog.Check(r) }

// Status is one line for /healthz?verbose.
func (e *Elector) Status() string {
	switch leader := e.Leader(); {
	case e.Leading():
		return fmt.Sprintf("leader %s/%s: this replica (%s)", e.cfg.Namespace, e.cfg.Name, e.cfg.Identity)
	case leader == "":
		return fmt.Sprintf("leader %s/%s: none seen yet; this replica is %s", e.cfg.Namespace, e.cfg.Name, e.cfg.Identity)
	default:
		return fmt.Sprintf("leader %s/%s: %s; this replica is %s", e.cfg.Namespace, e.cfg.Name, leader, e.cfg.Identity)
	}
}

// Run takes part in the election until ctx ends. Each time this replica becomes the
// leader, work runs with a context that ends when it stops leading; the next term
// starts only after work has returned. On ctx's end a leader releases the Lease.
func (e *Elector) Run(ctx context.Context, work func(ctx context.Context)) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, e.cfg.Namespace, e.cfg.Name,
		e.cfg.Client.CoreV1(), e.cfg.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: e.cfg.Identity})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: LeaseDuration, RenewDeadline: RenewDeadline, RetryPeriod: RetryPeriod,
			ReleaseOnCancel: true, Name: e.cfg.Name, WatchDog: e.watchdog,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(term context.Context) {
					// One term at a time: a term that begins while the last one's work
					// is still stopping waits for it.
					e.term.Lock()
					defer e.term.Unlock()
					if term.Err() != nil {
						return
					}
					e.setLeading(true)
					defer e.setLeading(false)
					e.cfg.Log.Info("leading: running the controllers", "lease", e.cfg.Namespace+"/"+e.cfg.Name, "identity", e.cfg.Identity)
					work(term)
				},
				OnStoppedLeading: func() {
					if e.leading.Load() {
						e.cfg.Log.Warn("stopped leading: the controllers stop", "lease", e.cfg.Namespace+"/"+e.cfg.Name, "identity", e.cfg.Identity)
					}
				},
				OnNewLeader: func(identity string) { e.leader.Store(identity) },
			},
		})
		if err != nil {
			return err
		}
		e.watchdog.SetLeaderElection(elector)
		elector.Run(ctx)
	}
	e.term.Lock() // the last term's work has returned
	e.term.Unlock()
	return nil
}

func (e *Elector) setLeading(leading bool) {
	e.leading.Store(leading)
	if leading {
		e.leader.Store(e.cfg.Identity)
		e.gauge.Set(1)
	} else {
		e.gauge.Set(0)
	}
}
