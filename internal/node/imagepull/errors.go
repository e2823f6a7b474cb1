package imagepull

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"pullgate.dev/pullgate/pkg/credentials"
)

// Reasons a pull fails, for status messages and metrics.
const (
	ReasonInvalidImageName     = "InvalidImageName"
	ReasonNoCredentialMatched  = "NoCredentialMatched"
	ReasonUnauthorized         = "Unauthorized"
	ReasonManifestUnknown      = "ManifestUnknown"
	ReasonRegistryUnreachable  = "RegistryUnreachable"
	ReasonTokenHostUnreachable = "TokenHostUnreachable"
	ReasonTLS                  = "TLS"
	ReasonTransferInterrupted  = "TransferInterrupted"
	ReasonDigestMismatch       = "DigestMismatch"
	ReasonNoPlatform           = "NoMatchingPlatform"
	ReasonStore                = "StoreError"
	ReasonRegistryError        = "RegistryError"
	// ReasonForeignRealm is a registry that names pullgate's own token service as its
	// realm, for an image that is not on pullgate's registry: nothing is sent to it.
	ReasonForeignRealm = "ForeignTokenRealm"
)

// Error is a failed pull: a reason for machines and one line for people, which
// names the image, the registry and the credentials tried but never holds a secret.
type Error struct {
	Reason  string
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

type failure struct {
	cred credentials.Candidate
	err  error
}

// authFailure reports whether another credential might do better.
func authFailure(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		if terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden {
			return true
		}
		for _, d := range terr.Errors {
			if d.Code == transport.UnauthorizedErrorCode || d.Code == transport.DeniedErrorCode {
				return true
			}
		}
	}
	return false
}

// explain turns the failures of one pull into one Error.
func explain(ref name.Reference, pl *plan, noCredentials bool, failures []failure) *Error {
	last := failures[len(failures)-1]
	repo := ref.Context().Name()
	registry := ref.Context().RegistryStr()
	if !authFailure(last.err) {
		return classify(last.err, ref, pl.tokenHost)
	}
	withheld := ""
	if pl.withheld != "" {
		withheld = " (" + pl.withheld + ")"
	}
	if noCredentials && len(failures) == 1 {
		return &Error{Reason: ReasonNoCredentialMatched, Err: last.err, Message: fmt.Sprintf(
			"no credential matched registry %s%s, and %s refused an anonymous pull of %s: %s; give the pod a pull secret for %s (pullgate create secret docker-registry NAME --docker-server=%s --docker-username=… --docker-password=…, then pullgate secrets link default NAME --for=pull)",
			registry, withheld, refuser(last.err, registry), repo, registryMessage(last.err), registry, registry)}
	}
	var tried []string
	for _, f := range failures {
		as := f.cred.Description
		if f.cred.Identity != "" {
			as = f.cred.Identity + " (" + f.cred.Description + ")"
		}
		tried = append(tried, fmt.Sprintf("as %s: %s refused: %s", as, refuser(f.err, registry), registryMessage(f.err)))
	}
	return &Error{Reason: ReasonUnauthorized, Err: last.err, Message: fmt.Sprintf("unauthorized to pull %s: %s%s", repo, strings.Join(tried, "; "), withheld)}
}

// refuser names who refused: the registry, or the token service on its own host.
func refuser(err error, registry string) string {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.Request != nil && terr.Request.URL.Host != registry {
		return "token service " + terr.Request.URL.Host
	}
	return "registry " + registry
}

// registryMessage is what the registry said, without the request line.
func registryMessage(err error) string {
	var terr *transport.Error
	if errors.As(err, &terr) {
		if len(terr.Errors) == 0 {
			return fmt.Sprintf("HTTP %d %s", terr.StatusCode, http.StatusText(terr.StatusCode))
		}
		var parts []string
		for _, d := range terr.Errors {
			parts = append(parts, d.String())
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}

// classify explains a failure that is not about credentials.
func classify(err error, ref name.Reference, tokenHost string) *Error {
	var perr *Error
	if errors.As(err, &perr) {
		return perr
	}
	registry := ref.Context().RegistryStr()
	var terr *transport.Error
	if errors.As(err, &terr) {
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return &Error{Reason: ReasonManifestUnknown, Err: err, Message: fmt.Sprintf("%s not found in registry %s: %s", ref.Name(), registry, registryMessage(err))}
			}
		}
		if terr.StatusCode == http.StatusNotFound {
			return &Error{Reason: ReasonManifestUnknown, Err: err, Message: fmt.Sprintf("%s not found in registry %s (HTTP 404)", ref.Name(), registry)}
		}
		return &Error{Reason: ReasonRegistryError, Err: err, Message: fmt.Sprintf("pulling %s: %s answered %s", ref.Name(), refuser(err, registry), registryMessage(err))}
	}
	var xerr *TransferError
	if errors.As(err, &xerr) {
		return &Error{Reason: ReasonTransferInterrupted, Err: err, Message: fmt.Sprintf("pulling %s from %s: %v (kept for the next try)", ref.Name(), registry, xerr)}
	}
	if errors.Is(err, ErrDigestMismatch) {
		return &Error{Reason: ReasonDigestMismatch, Err: err, Message: fmt.Sprintf("pulling %s from %s: %v", ref.Name(), registry, err)}
	}
	if strings.Contains(err.Error(), "no child with platform") {
		return &Error{Reason: ReasonNoPlatform, Err: err, Message: fmt.Sprintf("%s has no image for this node's platform: %v", ref.Name(), err)}
	}
	return connError(err, registry, tokenHost)
}

// connError explains a failure to talk to the registry or its token service.
func connError(err error, registry, tokenHost string) *Error {
	host := registry
	var uerr *url.Error
	if errors.As(err, &uerr) {
		if u, perr := url.Parse(uerr.URL); perr == nil && u.Host != "" {
			host = u.Host
		}
	}
	what := "registry " + registry
	reason := ReasonRegistryUnreachable
	if host != registry {
		what = "token service " + host + " (of registry " + registry + ")"
		reason = ReasonTokenHostUnreachable
	}
	if tlsProblem(err) {
		return &Error{Reason: ReasonTLS, Err: err, Message: fmt.Sprintf("TLS with %s failed: %v; give the node the CA that signed its certificate (pullgate node --ca-file)", what, rootCause(err))}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Reason: reason, Err: err, Message: fmt.Sprintf("%s did not answer in time: %v", what, rootCause(err))}
	}
	var nerr net.Error
	var dnsErr *net.DNSError
	if errors.As(err, &nerr) || errors.As(err, &dnsErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return &Error{Reason: reason, Err: err, Message: fmt.Sprintf("%s is unreachable: %v", what, rootCause(err))}
	}
	return &Error{Reason: ReasonRegistryError, Err: err, Message: fmt.Sprintf("talking to %s: %v", what, err)}
}

func tlsProblem(err error) bool {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify) || errors.As(err, &record)
}

// rootCause drops url.Error's "Get <url>:" prefix, which repeats what the message says.
func rootCause(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
