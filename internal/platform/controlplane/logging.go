package controlplane

import (
	"bytes"
	"flag"
	"io"
	"os"
	"strconv"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// startupNoise are warnings every healthy start of the embedded kube-apiserver
// prints; they say nothing a user can act on, so they are dropped at -v 0.
var startupNoise = [][]byte{
	[]byte("because it has no resources"),
	[]byte("The manifest file is empty"),
	[]byte(`namespaces \"kube-system\" not found`),
	[]byte("Found stale data, removed previous endpoints"),
}

// tameKlog routes the embedded components' klog output. At verbosity 0 warnings and
// errors reach stderr, minus known start-up noise; above 0 everything klog -v N
// would print does.
func tameKlog(verbosity int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for name, value := range map[string]string{
		"logtostderr":     "false",
		"alsologtostderr": "false",
		// klog's own copy to stderr is off; the writers below decide what is shown.
		"stderrthreshold": "FATAL",
		"v":               strconv.Itoa(verbosity),
		"one_output":      "true",
	} {
		_ = fs.Set(name, value)
	}
	// klog writes a line to the writer of its severity and of every severity below,
	// so exactly one writer is given stderr.
	stderr := &lineFilter{out: os.Stderr}
	klog.SetOutput(io.Discard)
	if verbosity > 0 {
		klog.SetOutputBySeverity("INFO", os.Stderr)
	} else {
		klog.SetOutputBySeverity("WARNING", stderr)
	}
}

// lineFilter drops klog lines that contain a startupNoise fragment.
type lineFilter struct {
	mu  sync.Mutex
	out io.Writer
}

func (f *lineFilter) Write(p []byte) (int, error) {
	for _, noise := range startupNoise {
		if bytes.Contains(p, noise) {
			return len(p), nil
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Write(p)
}

// etcdLogger is the embedded etcd's zap logger: errors at -v 0, warnings at -v 1,
// info at -v 2, debug from -v 4. Its level can be raised to silence shutdown chatter.
func etcdLogger(verbosity int) (*zap.Logger, zap.AtomicLevel) {
	level := zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	switch {
	case verbosity >= 4:
		level.SetLevel(zapcore.DebugLevel)
	case verbosity >= 2:
		level.SetLevel(zapcore.InfoLevel)
	case verbosity >= 1:
		level.SetLevel(zapcore.WarnLevel)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(os.Stderr), level)
	return zap.New(core).With(zap.String("component", "etcd")), level
}
