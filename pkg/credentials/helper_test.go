package credentials

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeHelper installs docker-credential-<name> on PATH running script (a unit-test fake).
func fakeHelper(t *testing.T, name, script string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestHelperProtocol(t *testing.T) {
	// The helper echoes the server it was asked for, so the test sees what was sent.
	fakeHelper(t, "test", `[ "$1" = get ] || exit 3; read -r server; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"s"}' "$server" "$server"`)
	fakeHelper(t, "token", `read -r server; printf '{"ServerURL":"%s","Username":"<token>","Secret":"refresh"}' "$server"`)
	doc := `{"auths":{},"credHelpers":{"gcr.io":"token"},"credsStore":"test"}`
	cfg, err := ParseConfig([]byte(doc), fileSrc)
	if err != nil {
		t.Fatal(err)
	}
	var kr Keyring
	kr.AddLayer("node", cfg)
	ctx := context.Background()

	matches, _ := kr.Lookup("gcr.io/p/app")
	if len(matches) != 2 || matches[0].Helper != "token" || matches[1].Helper != "test" {
		t.Fatalf("gcr.io matches %+v", matches)
	}
	c, err := matches[0].Resolve(ctx, 0)
	if err != nil || c.IdentityToken != "refresh" || c.Username != "" {
		t.Errorf("credHelpers gcr.io: %+v %v", c, err)
	}
	matches, _ = kr.Lookup("ubuntu")
	c, err = matches[0].Resolve(ctx, 0)
	if err != nil || c.Username != "u-https://index.docker.io/v1/" {
		t.Errorf("credsStore for Docker Hub: %+v %v", c, err)
	}
	if !strings.Contains(matches[0].Why(), "docker-credential-test") {
		t.Errorf("Why() = %q", matches[0].Why())
	}
}

func TestHelperFailures(t *testing.T) {
	fakeHelper(t, "missing", `echo "credentials not found in native keychain"; exit 1`)
	fakeHelper(t, "broken", `echo "secret-in-stderr" >&2; exit 7`)
	fakeHelper(t, "garbage", `echo "not json secret-value"`)
	fakeHelper(t, "hang", `exec sleep 30`)
	ctx := context.Background()

	_, err := RunHelper(ctx, "missing", "quay.io", 0)
	if !errors.Is(err, ErrHelperNoCredential) {
		t.Errorf("missing: %v", err)
	}
	_, err = RunHelper(ctx, "broken", "quay.io", 0)
	if err == nil || !strings.Contains(err.Error(), "docker-credential-broken get quay.io: exit code 7") || strings.Contains(err.Error(), "secret") {
		t.Errorf("broken: %v", err)
	}
	_, err = RunHelper(ctx, "garbage", "quay.io", 0)
	if err == nil || strings.Contains(err.Error(), "secret-value") {
		t.Errorf("garbage: %v", err)
	}
	begin := time.Now()
	_, err = RunHelper(ctx, "hang", "quay.io", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("hang: %v", err)
	}
	if time.Since(begin) > 10*time.Second {
		t.Errorf("a hanging helper was not stopped by its timeout")
	}
	_, err = RunHelper(ctx, "does-not-exist", "quay.io", 0)
	if err == nil || !strings.Contains(err.Error(), "docker-credential-does-not-exist") {
		t.Errorf("absent helper: %v", err)
	}
}
