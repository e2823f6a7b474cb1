package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"pullgate.dev/pullgate/internal/harness"
)

// seedRegistries are the harness's seed registries (privateregistry.example.com,
// delegating.example.com and its sso.example.com), started for one test behind the
// name proxy with a certificate from up's CA, holding the images the seed pulls:
// repository-main/app:v1 and other/app:v1 on the private one, team/app:v1 on the
// delegating one.
type seedRegistries struct {
	*harness.SeedRegistries
}

func startSeedRegistries(t *testing.T, ctx context.Context) *seedRegistries {
	t.Helper()
	regs, err := harness.StartSeedRegistries(filepath.Join(env.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(regs.Stop)
	developer := basicDockerConfig(t, map[string][2]string{regs.Private: {"developer", "dev-pass"}})
	for _, repo := range []string{"repository-main/app", "other/app"} {
		pushFile(t, ctx, developer, regs.Private+"/"+repo+":v1", []byte(regs.Private+"/"+repo+":v1"), regs.CAEnv)
	}
	sso := basicDockerConfig(t, map[string][2]string{regs.Delegating: harness.SSOUser})
	pushFile(t, ctx, sso, regs.Delegating+"/team/app:v1", []byte(regs.Delegating+"/team/app:v1"), regs.CAEnv)
	return &seedRegistries{regs}
}
