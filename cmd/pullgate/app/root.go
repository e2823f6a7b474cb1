// Package app assembles pullgate's cobra commands.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"pullgate.dev/pullgate/internal/cli"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	verbosity int
	out       io.Writer
	errOut    io.Writer
}

// logger is pullgate's own log; it also sets how much distribution (which logs
// through logrus's global logger) says: every 4xx is an error to it — a 404 on a HEAD
// is how clients ask whether a blob exists — so only -v shows its per-request log.
func (g *globalOptions) logger() *slog.Logger {
	level := slog.LevelInfo
	if g.verbosity >= 2 {
		level = slog.LevelDebug
	}
	logrus.SetLevel(logrus.FatalLevel)
	if g.verbosity > 0 {
		logrus.SetLevel(logrus.InfoLevel)
	}
	return slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: level}))
}

// NewRootCommand returns the pullgate command tree.
func NewRootCommand(out, errOut io.Writer) *cobra.Command {
	g := &globalOptions{out: out, errOut: errOut}
	root := &cobra.Command{
		Use:           "pullgate",
		Short:         "Image pull secrets, the integrated registry and its RBAC, on any Kubernetes cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	root.PersistentFlags().IntVarP(&g.verbosity, "v", "v", 0, "log verbosity: 0 shows warnings of the embedded components, higher shows more")
	root.AddCommand(newVersionCommand(g), newUpCommand(g), newRegistryCommand(g), newNodeCommand(g), newControllersCommand(g), newTokenServerCommand(g),
		newCredentialProviderCommand(g), newConsoleCommand(g))
	// oc's commands, as oc spells them.
	root.AddCommand(cli.Commands(genericiooptions.IOStreams{In: os.Stdin, Out: out, ErrOut: errOut}, newPruneCommand)...)
	return root
}

// Main runs pullgate with args and returns the process exit code. SIGINT and SIGTERM
// cancel the command's context, so it stops gracefully; a second one ends the process
// at once with 128+signal. One handler owns both, so a second signal that comes fast
// is never lost.
func Main(args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		<-signals
		cancel()
		sig := <-signals
		code := 128 + 15
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		os.Exit(code)
	}()
	root := NewRootCommand(os.Stdout, os.Stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var exit *cli.ExitCodeError
		if errors.As(err, &exit) {
			if exit.Err != nil {
				fmt.Fprintln(os.Stderr, "error:", exit.Err)
			}
			return exit.Code
		}
		if !errors.Is(err, errSilentExit) {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		return 1
	}
	return 0
}

// errSilentExit fails a command whose error has already been reported.
var errSilentExit = errors.New("already reported")
