package harness

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go/aws/credentials"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
)

// S3 is a Versity S3 Gateway (`versitygw posix`, installed by make tools) answering
// S3 on a loopback port with one bucket, its objects plain files under a directory.
// It checks signatures: clients need AccessKey and SecretKey.
type S3 struct {
	// Endpoint is http://localhost:<port>: by name, since crane (go-containerregistry)
	// refuses a redirect from a registry to a loopback IP literal (SSRF protection),
	// and a presigned URL names the endpoint.
	Endpoint  string
	Bucket    string
	AccessKey string
	SecretKey string
	cmd       *exec.Cmd
	done      chan struct{}
	logPath   string
}

// StartS3 runs the gateway on loopback with its data in dir and makes bucket.
func StartS3(dir, bucket string) (*S3, error) {
	return StartS3On(dir, bucket, "127.0.0.1")
}

// StartS3On is StartS3 listening on ip (a node's address, for pods to reach it);
// Endpoint then names ip.
func StartS3On(dir, bucket, ip string) (*S3, error) {
	gateway, err := Tool("versitygw")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "s3")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "s3.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	host := ip
	if ip == "127.0.0.1" {
		host = "localhost"
	}
	s := &S3{Endpoint: "http://" + net.JoinHostPort(host, strconv.Itoa(port)), Bucket: bucket,
		AccessKey: "pullgate-" + rand.Text()[:8], SecretKey: rand.Text(), done: make(chan struct{}), logPath: logPath}
	s.cmd = exec.Command(gateway, "--port", net.JoinHostPort(ip, strconv.Itoa(port)), "--quiet", "--health", "/healthz", "posix", root)
	// The keys go in the environment, not the command line other users can read.
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var last string
	if !Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		status, err := s.createBucket(ctx)
		if err != nil {
			last = err.Error()
			return false
		}
		last = status
		return status == "200 OK"
	}) {
		s.Stop()
		tail, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("the S3 gateway did not make bucket %s in time (last answer: %s); its log:\n%s", bucket, last, lastBytes(tail, 4000))
	}
	return s, nil
}

// createBucket sends a signed PUT of the bucket and returns the answer's status.
func (s *S3) createBucket(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.Endpoint+"/"+s.Bucket, nil)
	if err != nil {
		return "", err
	}
	signer := v4.NewSigner(credentials.NewStaticCredentials(s.AccessKey, s.SecretKey, ""))
	if _, err := signer.Sign(req, nil, "s3", "us-east-1", time.Now()); err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Status, nil
}

// StorageParams are `registry serve`'s flags for this bucket, except the credentials
// (CredentialParams, or a --storage-param-dir holding AccessKey and SecretKey).
func (s *S3) StorageParams() []string {
	return []string{"--storage", "s3",
		"--storage-param", "bucket=" + s.Bucket, "--storage-param", "region=us-east-1",
		"--storage-param", "regionendpoint=" + s.Endpoint, "--storage-param", "forcepathstyle=true",
		"--storage-param", "secure=false"}
}

// CredentialParams are `registry serve`'s flags for the gateway's keys.
func (s *S3) CredentialParams() []string {
	return []string{"--storage-param", "accesskey=" + s.AccessKey, "--storage-param", "secretkey=" + s.SecretKey}
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
