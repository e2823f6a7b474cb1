package controlplane

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/cache"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// schedulerArgs serve the scheduler's /healthz on a loopback port, like the controller
// manager's. One scheduler, so no leader election.
func (p *paths) schedulerArgs(healthPort, verbosity int) []string {
	return []string{
		"--kubeconfig=" + p.schedulerKubeconfig,
		"--authentication-kubeconfig=" + p.schedulerKubeconfig,
		"--authorization-kubeconfig=" + p.schedulerKubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(healthPort),
		"--leader-elect=false",
		"--v=" + strconv.Itoa(verbosity),
	}
}

// parseSchedulerArgs reads args with the real kube-scheduler's flags.
func parseSchedulerArgs(args []string) (*options.Options, error) {
	opts := options.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("kube-scheduler flags: %w", err)
	}
	return opts, nil
}

// runScheduler runs the real kube-scheduler in this process until ctx ends: it binds
// pods to pullgate's node agents exactly as it would to kubelets.
func runScheduler(ctx context.Context, args []string) error {
	opts, err := parseSchedulerArgs(args)
	if err != nil {
		return err
	}
	name, err := cache.NewInformerName("kube-scheduler")
	if err != nil {
		return err
	}
	defer name.Release()
	opts.InformerName = name
	cc, sched, err := app.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	return app.Run(ctx, cc, sched)
}
