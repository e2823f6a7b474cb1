package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// DefaultHelperTimeout bounds one run of a docker-credential helper.
const DefaultHelperTimeout = 10 * time.Second

// helperNotFound is what docker-credential-helpers print when they hold nothing for a server.
const helperNotFound = "credentials not found in native keychain"

// ErrHelperNoCredential means the helper answered that it has nothing for the server.
var ErrHelperNoCredential = errors.New("the credential helper has no credential for this registry")

// Resolve returns the match's credential, running its docker-credential helper if the
// credential lives in one (files only; Secrets never name helpers). The helper gets
// the registry host and at most timeout (DefaultHelperTimeout when 0).
func (m Match) Resolve(ctx context.Context, timeout time.Duration) (Credential, error) {
	if m.Helper == "" {
		return m.Credential, nil
	}
	server := m.NormalizedKey
	if i := strings.IndexByte(server, '/'); i >= 0 {
		server = server[:i]
	}
	if server == dockerHub {
		server = "https://index.docker.io/v1/"
	}
	return RunHelper(ctx, m.Helper, server, timeout)
}

// RunHelper runs `docker-credential-<helper> get` with server on stdin, per the
// docker-credential-helpers protocol. Errors name the helper and the server, never
// the secret.
func RunHelper(ctx context.Context, helper, server string, timeout time.Duration) (Credential, error) {
	if timeout <= 0 {
		timeout = DefaultHelperTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	program := "docker-credential-" + helper
	cmd := exec.CommandContext(ctx, program, "get")
	cmd.Stdin = strings.NewReader(server)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A helper's children may hold its output open after it is killed.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return Credential{}, fmt.Errorf("%s get %s: no answer within %s", program, server, timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(stdout.String())
		if strings.Contains(msg, helperNotFound) {
			return Credential{}, fmt.Errorf("%s get %s: %w", program, server, ErrHelperNoCredential)
		}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return Credential{}, fmt.Errorf("%s get %s: exit code %d", program, server, exitErr.ExitCode())
		}
		return Credential{}, fmt.Errorf("%s get %s: %w", program, server, err)
	}
	return parseHelperOutput(stdout.Bytes(), program, server)
}

// parseHelperOutput reads {"ServerURL": …, "Username": …, "Secret": …}. A Username of
// "<token>" marks an identity token.
func parseHelperOutput(out []byte, program, server string) (Credential, error) {
	var resp struct {
		ServerURL string
		Username  string
		Secret    string
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return Credential{}, fmt.Errorf("%s get %s: answer is not the helper protocol's JSON", program, server)
	}
	if resp.Username == "<token>" {
		return Credential{IdentityToken: resp.Secret}, nil
	}
	return Credential{Username: resp.Username, Password: resp.Secret}, nil
}
