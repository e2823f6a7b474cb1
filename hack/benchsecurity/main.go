// Command benchsecurity measures, against a real `pullgate up`, how fast a removed
// RoleBinding bites: the time from the API server accepting the delete to the first
// request refused with a registry token issued before it (goal: under 1 s; anchor:
// distribution trusts a token until it expires, 5 minutes here, plus 60 s leeway);
// and a good client's login latency during a flood of bad logins from its own
// address, beside the same without the flood (goal: none refused).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

func main() {
	rounds := flag.Int("rounds", 20, "revocations measured")
	flag.Parse()
	ctx := context.Background()
	env, err := harness.Start(harness.Options{})
	check(err)
	defer env.Close()

	for _, ns := range []string{"owner", "reader"} {
		_, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		check(err)
	}
	adminToken, err := env.Account(ctx, "owner", "admin", "admin")
	check(err)
	cfg, err := env.DockerConfig(env.DataDir, adminToken)
	check(err)
	defer os.RemoveAll(cfg)
	image := env.RegistryHost + "/owner/app:v1"
	until(30*time.Second, func() bool {
		_, err := harness.PushFile(ctx, cfg, image, []byte("benchsecurity"))
		return err == nil
	})
	digest, err := harness.Crane(ctx, cfg, "digest", image)
	check(err)
	manifest := "http://" + env.RegistryHost + "/v2/owner/app/manifests/" + trim(digest)
	readerToken, err := env.Account(ctx, "reader", "app", "")
	check(err)

	var took []time.Duration
	for range *rounds {
		bind(ctx, env, "owner", "system:image-puller", "app", "reader")
		var bearer string
		until(10*time.Second, func() bool {
			bearer = registryToken(env, readerToken, "repository:owner/app:pull")
			return get(manifest, bearer) == http.StatusOK
		})
		check(env.Admin.RbacV1().RoleBindings("owner").Delete(ctx, "reader-app", metav1.DeleteOptions{}))
		deleted := time.Now()
		until(10*time.Second, func() bool { return get(manifest, bearer) == http.StatusUnauthorized })
		took = append(took, time.Since(deleted))
	}
	slices.Sort(took)
	fmt.Printf("%-44s %10s %10s %12s %s\n", "revocation (same machine)", "p50", "p99", "goal", "anchor")
	fmt.Printf("%-44s %10s %10s %12s %s\n", fmt.Sprintf("delete rolebinding → old token refused (%d)", len(took)),
		took[len(took)/2].Round(time.Millisecond), took[len(took)*99/100].Round(time.Millisecond), "< 1s",
		fmt.Sprintf("distribution: token lifetime %s + 60s leeway", tokenauth.MaxLifetime))

	loginsDuringFlood(ctx, env, *rounds*2)
}

func bind(ctx context.Context, env *harness.Env, ns, role, sa, saNS string) {
	_, err := env.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: saNS + "-" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: saNS}},
	}, metav1.CreateOptions{})
	check(err)
}

func registryToken(env *harness.Env, k8sToken, scope string) string {
	q := url.Values{"service": {tokenauth.Service}, "scope": {scope}}
	req, _ := http.NewRequest(http.MethodGet, "http://"+env.RegistryHost+"/token?"+q.Encode(), nil)
	req.SetBasicAuth("bench", k8sToken)
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	var body struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.Token
}

func get(u, bearer string) int {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	check(err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// until polls cond, as fast as it answers, for at most limit.
func until(limit time.Duration, cond func() bool) {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			check(fmt.Errorf("condition not met within %s", limit))
		}
	}
}

func trim(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsecurity:", err)
		os.Exit(1)
	}
}
