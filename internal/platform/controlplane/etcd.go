package controlplane

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const etcdStartTimeout = 60 * time.Second

// startEtcd runs a one-member etcd on loopback with its data in dir.
func startEtcd(ctx context.Context, dir string, clientPort, peerPort int, verbosity int) (*etcdServer, error) {
	cfg := embed.NewConfig()
	cfg.Name = "pullgate"
	cfg.Dir = dir
	cfg.WalDir = filepath.Join(dir, "wal")
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	logger, level := etcdLogger(verbosity)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)
	// Keep the history small: a development control plane, compacted hourly.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.QuotaBackendBytes = 2 << 30

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return &etcdServer{Etcd: e, level: level}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	case <-time.After(etcdStartTimeout):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: not ready after %s", dir, etcdStartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

// etcdServer is the embedded etcd and the level of its logger.
type etcdServer struct {
	*embed.Etcd
	level zap.AtomicLevel
}

// Close stops etcd. Its listeners' "use of closed network connection" errors on the
// way down are expected, so the logger is quietened first.
func (e *etcdServer) Close() {
	e.level.SetLevel(zapcore.FatalLevel)
	e.Etcd.Close()
}
