package credentials

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestCredentialIDsHashContentNeverShowIt(t *testing.T) {
	src := Source{Kind: "secret", Name: "a/s", UID: "uid"}
	a := CredentialID(src, Credential{Username: "u", Password: "hunter2"})
	b := CredentialID(src, Credential{Username: "u", Password: "hunter3"})
	if a == b || !strings.HasPrefix(a, "secret:a/s/uid#") || strings.Contains(a, "hunter2") {
		t.Errorf("ids %q %q", a, b)
	}
	if a != CredentialID(src, Credential{Username: "u", Password: "hunter2"}) {
		t.Error("the same content has two ids")
	}
	again := src
	again.UID = "uid-2"
	if CredentialID(again, Credential{Username: "u", Password: "hunter2"}) == a {
		t.Error("a secret made again under the same name has the same id")
	}
}

// A chain gives its providers' candidates in order; the keychain adapter gives the
// first, or anonymous.
func TestChainAndKeychain(t *testing.T) {
	ctx := context.Background()
	first := keyring("quay.io/repo", "repo-user")
	second := keyring("quay.io", "host-user")
	chain := Chain{first, second}
	got, err := chain.Candidates(ctx, "quay.io/repo/app")
	if err != nil || len(got.List) != 2 || got.List[0].Username != "repo-user" || got.List[1].Username != "host-user" {
		t.Fatalf("chain: %+v %v", got, err)
	}
	repo, _ := name.NewRepository("quay.io/repo/app")
	auth, err := Keychain(chain).Resolve(repo)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := auth.Authorization()
	if cfg.Username != "repo-user" {
		t.Errorf("keychain gave %q", cfg.Username)
	}
	other, _ := name.NewRepository("ghcr.io/x/y")
	if auth, _ := Keychain(chain).Resolve(other); auth != authn.Anonymous {
		t.Errorf("keychain for an unknown registry: %v", auth)
	}
	if _, err := chain.Candidates(ctx, "Not//Valid"); err == nil {
		t.Error("an invalid image was looked up")
	}
}
