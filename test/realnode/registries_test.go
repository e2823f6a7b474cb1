package realnode

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// registryScenarios are the seed's pulls from external registries: the private
// registry's access log says which credential pulled. Every image is pushed under a
// tag of its own (the pod's namespace), so no node has it yet.
var registryScenarios = []scenario{
	{"HtpasswdRegistryWithADockerConfigJSONSecret", "pulled as developer", "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		ns := newProject(t, ctx, e, "docker")
		secret(t, ctx, e, ns, corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey, map[string][2]string{seed.Private: {"developer", harness.PrivateUsers["developer"]}})
		image, tag := pushPrivate(t, ctx, "other/app", ns)
		return pulledAs(t, ctx, e, ns, runPod(t, ctx, e, ns, "app", image, "pull"), "other/app", tag)
	}},
	// The real kubelet reads only kubernetes.io/dockerconfigjson and dockercfg
	// secrets: it skips the Podman one, and the node's cluster pull secret pulls.
	{"HtpasswdRegistryWithAPodmanAuthJSONSecret", "pulled as developer", "pulled as node-user", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		ns := newProject(t, ctx, e, "podman")
		secret(t, ctx, e, ns, credentials.SecretTypePodmanConfigJSON, "auth.json", map[string][2]string{seed.Private: {"developer", harness.PrivateUsers["developer"]}})
		image, tag := pushPrivate(t, ctx, "other/app", ns)
		return pulledAs(t, ctx, e, ns, runPod(t, ctx, e, ns, "app", image, "pull"), "other/app", tag)
	}},
	// One secret, two entries: the repository's entry pulls that repository, the
	// registry's entry everything else.
	{"TheMostSpecificPathWins", "repository-main/app pulled as main-user, other/app pulled as developer", "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		ns := newProject(t, ctx, e, "paths")
		secret(t, ctx, e, ns, corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey, map[string][2]string{
			seed.Private:                      {"developer", harness.PrivateUsers["developer"]},
			seed.Private + "/repository-main": {"main-user", harness.PrivateUsers["main-user"]},
		})
		var got string
		for i, repo := range []string{"repository-main/app", "other/app"} {
			image, tag := pushPrivate(t, ctx, repo, ns)
			if i > 0 {
				got += ", "
			}
			got += repo + " " + pulledAs(t, ctx, e, ns, runPod(t, ctx, e, ns, fmt.Sprintf("app-%d", i), image, "pull"), repo, tag)
		}
		return got
	}},
	// No secret of the pod's own for the registry: the cluster pull secret (the
	// node's config.json on the real kubelet) pulls.
	{"TheClusterPullSecretAlone", "pulled as node-user", "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		ns := newProject(t, ctx, e, "cluster")
		image, tag := pushPrivate(t, ctx, "repository-main/app", ns)
		return pulledAs(t, ctx, e, ns, runPod(t, ctx, e, ns, "app", image), "repository-main/app", tag)
	}},
	// Delegated authentication as the seed says it: a secret for the token service's
	// host and one for the registry, both with the SSO account.
	{"DelegatedAuthenticationWithSecretsForBothEndpoints", pulled, "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		return delegated(t, ctx, e, harness.SSOUser[1])
	}},
	// The registry's own entry holds another password than the SSO account: the node
	// agent sends the token service the token host's credential and pulls; containerd
	// sends the registry's (it is given no other) and is refused.
	{"DelegatedAuthenticationWhereTheRegistrysEntryIsNotTheSSOPassword", pulled, refused, func(t *testing.T, ctx context.Context, e *harness.Env) string {
		return delegated(t, ctx, e, "not-the-sso-password")
	}},
}

// delegated runs a pod pulling from the delegating registry with two secrets: the SSO
// account for sso.example.com, and the SSO user with registryPassword for the registry.
func delegated(t *testing.T, ctx context.Context, e *harness.Env, registryPassword string) string {
	t.Helper()
	ns := newProject(t, ctx, e, "delegated")
	secret(t, ctx, e, ns, corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey, map[string][2]string{
		seed.SSO: harness.SSOUser, seed.Delegating: {harness.SSOUser[0], registryPassword},
	})
	cfg, err := harness.BasicDockerConfig(t.TempDir(), map[string][2]string{seed.Delegating: harness.SSOUser})
	if err != nil {
		t.Fatal(err)
	}
	image := seed.Delegating + "/team/app:" + ns
	pushRunnable(t, ctx, cfg, image, seed.CAEnv)
	got, msg := outcome(t, ctx, e, ns, runPod(t, ctx, e, ns, "app", image, "pull"))
	t.Logf("%s: %s %s", image, got, msg)
	return got
}

// secret makes Secret "pull" in ns of type typ, with a docker config.json of
// entries under key.
func secret(t *testing.T, ctx context.Context, e *harness.Env, ns string, typ corev1.SecretType, key string, entries map[string][2]string) {
	t.Helper()
	data, err := harness.DockerConfigJSON(entries)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pull"}, Type: typ, Data: map[string][]byte{key: data},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// pushPrivate pushes a runnable image to repo:tag on the private registry as
// developer, and returns its name and tag.
func pushPrivate(t *testing.T, ctx context.Context, repo, tag string) (string, string) {
	t.Helper()
	cfg, err := harness.BasicDockerConfig(t.TempDir(), map[string][2]string{seed.Private: {"developer", harness.PrivateUsers["developer"]}})
	if err != nil {
		t.Fatal(err)
	}
	image := seed.Private + "/" + repo + ":" + tag
	pushRunnable(t, ctx, cfg, image, seed.CAEnv)
	return image, tag
}

// pulledAs is the pod's outcome and, when it pulled, the user the private
// registry's access log names for repo:tag.
func pulledAs(t *testing.T, ctx context.Context, e *harness.Env, ns, pod, repo, tag string) string {
	t.Helper()
	got, msg := outcome(t, ctx, e, ns, pod)
	if got != pulled {
		t.Logf("pod %s/%s: %s", ns, pod, msg)
		return got
	}
	return pulled + " as " + seed.PulledBy(repo, tag)
}
