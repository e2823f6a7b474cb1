package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// S3 is a SeaweedFS server (`weed server -s3`, installed by make tools) answering S3
// on a loopback port, with one bucket, for tests that keep blobs in S3.
type S3 struct {
	// Endpoint is http://localhost:<port>: by name, since crane (go-containerregistry)
	// refuses a redirect from a registry to a loopback IP literal (SSRF protection),
	// and a presigned URL names the endpoint.
	Endpoint string
	Bucket   string
	cmd      *exec.Cmd
	done     chan struct{}
	logPath  string
}

// StartS3 runs SeaweedFS on loopback with its data in dir and makes bucket.
func StartS3(dir, bucket string) (*S3, error) {
	return StartS3On(dir, bucket, "127.0.0.1")
}

// StartS3On is StartS3 listening on ip (a node's address, for pods to reach it);
// Endpoint then names ip.
func StartS3On(dir, bucket, ip string) (*S3, error) {
	weed, err := Tool("weed")
	if err != nil {
		return nil, err
	}
	ports := make([]int, 8)
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	logPath := dir + "/weed.log"
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(weed, "server", "-dir="+dir, "-ip="+ip, "-ip.bind="+ip,
		"-master.port="+p(0), "-master.port.grpc="+p(1), "-volume.port="+p(2), "-volume.port.grpc="+p(3),
		"-filer.port="+p(4), "-filer.port.grpc="+p(5), "-s3", "-s3.port="+p(6), "-s3.port.grpc="+p(7),
		"-master.volumeSizeLimitMB=256", "-volume.max=16")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	host := ip
	if ip == "127.0.0.1" {
		host = "localhost"
	}
	s := &S3{Endpoint: "http://" + net.JoinHostPort(host, p(6)), Bucket: bucket, cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() { _ = cmd.Wait(); close(s.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Anonymous S3 (no identities configured): a PUT makes the bucket once the
	// gateway and the filer behind it answer.
	if !Eventually(ctx, 2*time.Minute, func(ctx context.Context) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, s.Endpoint+"/"+bucket, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusConflict
	}) {
		s.Stop()
		tail, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("SeaweedFS did not make bucket %s in time; its log:\n%s", bucket, lastBytes(tail, 4000))
	}
	return s, nil
}

// StorageParams are `registry serve`'s flags for this bucket, except the credentials.
func (s *S3) StorageParams() []string {
	return []string{"--storage", "s3",
		"--storage-param", "bucket=" + s.Bucket, "--storage-param", "region=us-east-1",
		"--storage-param", "regionendpoint=" + s.Endpoint, "--storage-param", "forcepathstyle=true",
		"--storage-param", "secure=false"}
}

// Stop ends the server.
func (s *S3) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
