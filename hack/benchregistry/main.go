// Command benchregistry compares pullgate's integrated registry with Debian's
// docker-registry 2.8.2 (distribution v2) on this machine, in one run, both with token
// auth: 256 MiB blob GET throughput (goal ≥ 2×) and manifest GETs at 64 connections
// (goal ≥ 1×). Both registries use filesystem storage in a temporary directory.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

type target struct {
	name, host, repo, token string
}

func main() {
	blobMiB := flag.Int("blob-mib", 256, "blob size")
	rounds := flag.Int("rounds", 9, "blob GETs per registry")
	manifestGets := flag.Int("manifest-gets", 20000, "manifest GETs per registry")
	conns := flag.Int("connections", 64, "concurrent connections for manifest GETs")
	flag.Parse()
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "benchregistry-")
	check(err)
	defer os.RemoveAll(tmp)

	ref, stopRef := startReference(tmp)
	defer stopRef()
	env, err := harness.Start(harness.Options{})
	check(err)
	defer env.Close()
	pg := pullgateTarget(ctx, env)

	blob := make([]byte, *blobMiB<<20)
	_, _ = rand.Read(blob)
	for _, t := range []*target{ref, pg} {
		check(pushImage(t, blob))
	}

	blobRate := map[string]float64{}
	for _, t := range []*target{ref, pg} {
		var rates []float64
		for range *rounds {
			rates = append(rates, getBlob(t, sha256Digest(blob), len(blob)))
		}
		sort.Float64s(rates)
		blobRate[t.name] = rates[len(rates)/2]
	}
	manifestRate := map[string]float64{}
	for _, t := range []*target{ref, pg} {
		manifestRate[t.name] = getManifests(t, *manifestGets, *conns)
	}

	fmt.Printf("%-36s %14s %22s %8s %6s\n", "registry benchmark (same machine)", "pullgate", "docker-registry 2.8.2", "ratio", "goal")
	fmt.Printf("%-36s %10.0f MB/s %17.0f MB/s %7.2fx %6s\n", fmt.Sprintf("%d MiB blob GET (median of %d)", *blobMiB, *rounds),
		blobRate[pg.name], blobRate[ref.name], blobRate[pg.name]/blobRate[ref.name], ">= 2x")
	fmt.Printf("%-36s %12.0f/s %20.0f/s %7.2fx %6s\n", fmt.Sprintf("manifest GET, token auth, %d conns", *conns),
		manifestRate[pg.name], manifestRate[ref.name], manifestRate[pg.name]/manifestRate[ref.name], ">= 1x")
}

// startReference runs docker-registry 2.8.2 with token auth trusting a key of ours.
func startReference(tmp string) (*target, func()) {
	bin, err := exec.LookPath("docker-registry")
	check(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	check(err)
	certFile := filepath.Join(tmp, "token.crt")
	check(os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	port, err := harness.FreePort()
	check(err)
	config := fmt.Sprintf(`version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}
http: {addr: 127.0.0.1:%d, secret: bench}
auth: {token: {realm: http://127.0.0.1:1/token, service: bench, issuer: bench, rootcertbundle: %s}}
`, filepath.Join(tmp, "reference"), port, certFile)
	configFile := filepath.Join(tmp, "config.yml")
	check(os.WriteFile(configFile, []byte(config), 0o644))
	cmd := exec.Command(bin, "serve", configFile)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	check(cmd.Start())
	host := fmt.Sprintf("127.0.0.1:%d", port)
	waitHTTP("http://" + host + "/v2/")
	t := &target{name: "reference", host: host, repo: "bench/app", token: referenceToken(key, "bench/app")}
	return t, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
}

// referenceToken mints a token distribution v2 accepts: kid is libtrust's key ID of
// the certificate's key, aud a single string.
func referenceToken(key *ecdsa.PrivateKey, repo string) string {
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	check(err)
	sum := sha256.Sum256(pubDER)
	s := strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:30]), "=")
	var parts []string
	for i := 0; i < len(s); i += 4 {
		parts = append(parts, s[i:min(i+4, len(s))])
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithHeader("kid", strings.Join(parts, ":")).WithType("JWT"))
	check(err)
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"iss": "bench", "sub": "bench", "aud": "bench", "jti": "bench",
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"access": []map[string]any{{"type": "repository", "name": repo, "actions": []string{"pull", "push"}}},
	})
	jws, err := signer.Sign(claims)
	check(err)
	token, err := jws.CompactSerialize()
	check(err)
	return token
}

// pullgateTarget makes a project admin and gets a registry token from the token service.
func pullgateTarget(ctx context.Context, env *harness.Env) *target {
	ns := "bench"
	_, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	check(err)
	saToken, err := env.Account(ctx, ns, "admin", "admin")
	check(err)
	t := &target{name: "pullgate", host: env.RegistryHost, repo: ns + "/app"}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		q := url.Values{"service": {"pullgate-registry"}, "scope": {"repository:" + t.repo + ":pull,push"}}
		req, _ := http.NewRequest(http.MethodGet, "http://"+t.host+"/token?"+q.Encode(), nil)
		req.SetBasicAuth("bench", saToken)
		resp, err := http.DefaultClient.Do(req)
		check(err)
		var body struct{ Token string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		t.token = body.Token
		if err := pushBlob(t, []byte("probe")); err == nil {
			return t
		}
		time.Sleep(200 * time.Millisecond)
	}
	check(fmt.Errorf("pullgate never granted the project admin push"))
	return nil
}

func (t *target) do(method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	u := path
	if !strings.HasPrefix(path, "http") {
		u = "http://" + t.host + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	return http.DefaultClient.Do(req)
}

func pushBlob(t *target, data []byte) error {
	resp, err := t.do(http.MethodPost, "/v2/"+t.repo+"/blobs/uploads/", nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("%s: upload start: %s", t.name, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return err
	}
	q := loc.Query()
	q.Set("digest", sha256Digest(data))
	loc.RawQuery = q.Encode()
	resp, err = t.do(http.MethodPut, loc.String(), bytes.NewReader(data), http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s: upload: %s", t.name, resp.Status)
	}
	return nil
}

func pushImage(t *target, layer []byte) error {
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	for _, b := range [][]byte{config, layer} {
		if err := pushBlob(t, b); err != nil {
			return err
		}
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256Digest(config), "size": len(config)},
		"layers": []map[string]any{{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256Digest(layer), "size": len(layer)}},
	})
	resp, err := t.do(http.MethodPut, "/v2/"+t.repo+"/manifests/v1", bytes.NewReader(manifest),
		http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s: manifest put: %s", t.name, resp.Status)
	}
	return nil
}

// getBlob returns MB/s for one full GET of the blob.
func getBlob(t *target, digest string, size int) float64 {
	begin := time.Now()
	resp, err := t.do(http.MethodGet, "/v2/"+t.repo+"/blobs/"+digest, nil, nil)
	check(err)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	check(err)
	if resp.StatusCode != http.StatusOK || int(n) != size {
		check(fmt.Errorf("%s: blob GET %s, %d bytes", t.name, resp.Status, n))
	}
	return float64(n) / 1e6 / time.Since(begin).Seconds()
}

// getManifests returns manifest GETs per second over conns keep-alive connections.
func getManifests(t *target, total, conns int) float64 {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	var next atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				req, _ := http.NewRequest(http.MethodGet, "http://"+t.host+"/v2/"+t.repo+"/manifests/v1", nil)
				req.Header.Set("Authorization", "Bearer "+t.token)
				req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
				resp, err := client.Do(req)
				check(err)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					check(fmt.Errorf("%s: manifest GET %s", t.name, resp.Status))
				}
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(begin).Seconds()
}

func waitHTTP(u string) {
	for range 100 {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	check(fmt.Errorf("%s did not answer", u))
}

func sha256Digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchregistry:", err)
		os.Exit(1)
	}
}
