// Package tokenauth is the contract between the integrated registry and its token
// service: the names tokens are issued under, how a registry action maps to an RBAC
// request (as in OpenShift: pull is get on imagestreams/layers, push is update on it,
// delete is delete on imagestreams), who an anonymous caller is, and the claims a
// registry token carries.
package tokenauth

import (
	"fmt"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// The integrated registry's token names: Service is the audience of its tokens (and
// of the service-account tokens it accepts besides the API server's own), Issuer
// the token service that signs them.
const (
	Service = "pullgate-registry"
	Issuer  = "pullgate-token-service"
)

// MaxLifetime bounds registry tokens: the token service issues none longer, and the
// registry refuses any that claims to be.
const MaxLifetime = 5 * time.Minute

// Anonymous is who a request without credentials is.
var Anonymous = rbacauthz.User{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}

// Authorizer decides one RBAC request for a user, and says which binding allowed it.
type Authorizer interface {
	Allowed(user rbacauthz.User, req rbacauthz.Request) (bool, string)
}

// RequestFor is the RBAC request a registry action on the repository
// namespace/name needs.
func RequestFor(action, namespace, name string) rbacauthz.Request {
	req := rbacauthz.Request{Namespace: namespace, Group: imageapi.Group, Resource: imageapi.Resource, Name: name}
	switch action {
	case "pull":
		req.Verb, req.Subresource = "get", imageapi.LayersSubresource
	case "push":
		req.Verb, req.Subresource = "update", imageapi.LayersSubresource
	case "delete":
		req.Verb = "delete"
	default:
		req.Verb = action
	}
	return req
}

// SplitRepository splits a repository name into the namespace that owns it (its first
// component) and the name of its ImageStream there (StreamName of the rest).
func SplitRepository(repository string) (namespace, stream string, ok bool) {
	namespace, rest, ok := strings.Cut(repository, "/")
	if !ok || namespace == "" || rest == "" {
		return "", "", false
	}
	return namespace, imageapi.StreamName(rest), true
}

// Claims are distribution's claim set plus the subject's groups, which the registry
// needs to decide RBAC for the subject on every request.
type Claims struct {
	token.ClaimSet
	Groups []string `json:"groups,omitempty"`
}

// User is who the token was issued to.
func (c Claims) User() rbacauthz.User {
	if c.Subject == "" {
		return Anonymous
	}
	return rbacauthz.User{Name: c.Subject, Groups: c.Groups}
}

// Lifetime is how long the token claims to be valid from when it was issued.
func (c Claims) Lifetime() time.Duration {
	return time.Duration(c.Expiration-c.IssuedAt) * time.Second
}

// Grants reports whether the token grants action on the resource typ:name.
func (c Claims) Grants(typ, name, action string) bool {
	for _, a := range c.Access {
		if a.Type != typ || a.Name != name {
			continue
		}
		for _, granted := range a.Actions {
			if granted == action || granted == "*" {
				return true
			}
		}
	}
	return false
}

// signatureAlgorithms are those the registry accepts, and so the only ones parsed.
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// ParseVerified reads the claims of a compact JWT whose signature, issuer, audience
// and expiry have already been verified (by distribution's token verifier): it does
// not verify them again.
func ParseVerified(raw string) (Claims, error) {
	tok, err := jwt.ParseSigned(raw, signatureAlgorithms)
	if err != nil {
		return Claims{}, fmt.Errorf("registry token: %w", err)
	}
	var c Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return Claims{}, fmt.Errorf("registry token claims: %w", err)
	}
	return c, nil
}

// BearerToken is the token of an "Authorization: Bearer …" header, or "".
func BearerToken(header string) string {
	scheme, raw, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(raw)
}
