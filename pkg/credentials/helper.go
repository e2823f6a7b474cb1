package credentials

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/docker/docker-credential-helpers/client"
	helpercreds "github.com/docker/docker-credential-helpers/credentials"
)

// DefaultHelperTimeout bounds one run of a docker-credential helper.
const DefaultHelperTimeout = 10 * time.Second

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
	if server == "docker.io" || server == defaultRegistryHost {
		server = "https://index.docker.io/v1/"
	}
	return RunHelper(ctx, m.Helper, server, timeout)
}

// RunHelper runs `docker-credential-<helper> get` for server, with the protocol of
// docker-credential-helpers' own client. Errors name the helper and the server, never
// the secret.
func RunHelper(ctx context.Context, helper, server string, timeout time.Duration) (Credential, error) {
	if timeout <= 0 {
		timeout = DefaultHelperTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	program := "docker-credential-" + helper
	var cmd *exec.Cmd
	creds, err := client.Get(func(args ...string) client.Program {
		cmd = exec.CommandContext(ctx, program, args...)
		// A helper's children may hold its output open after it is killed.
		cmd.WaitDelay = time.Second
		return helperProgram{cmd}
	}, server)
	var exitErr *exec.ExitError
	switch {
	case err == nil && creds.Username == "<token>":
		return Credential{IdentityToken: creds.Secret}, nil
	case err == nil:
		return Credential{Username: creds.Username, Password: creds.Secret}, nil
	case ctx.Err() == context.DeadlineExceeded:
		return Credential{}, fmt.Errorf("%s get %s: no answer within %s", program, server, timeout)
	case helpercreds.IsErrCredentialsNotFound(err):
		return Credential{}, fmt.Errorf("%s get %s: %w", program, server, ErrHelperNoCredential)
	case cmd != nil && cmd.ProcessState != nil && !cmd.ProcessState.Success():
		return Credential{}, fmt.Errorf("%s get %s: exit code %d", program, server, cmd.ProcessState.ExitCode())
	case errors.As(err, &exitErr):
		return Credential{}, fmt.Errorf("%s get %s: exit code %d", program, server, exitErr.ExitCode())
	case cmd != nil && cmd.ProcessState == nil:
		return Credential{}, fmt.Errorf("%s get %s: %v", program, server, cmd.Err)
	default:
		// What the helper printed may hold the secret: it is not repeated.
		return Credential{}, fmt.Errorf("%s get %s: answer is not the helper protocol's JSON", program, server)
	}
}

// helperProgram is a helper's process as docker-credential-helpers' client runs it.
type helperProgram struct{ *exec.Cmd }

func (p helperProgram) Input(in io.Reader) { p.Stdin = in }
