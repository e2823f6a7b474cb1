package registry

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/prometheus/client_golang/prometheus"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// AccessControllerName is the name pullgate's access controller is registered under.
const AccessControllerName = "pullgate"

func init() {
	if err := auth.Register(AccessControllerName, newAccessController); err != nil {
		panic(err)
	}
}

// accessController verifies registry tokens offline with distribution's token
// verifier (issuer, audience, ES256/EdDSA key from the JWKS, expiry, scope), then goes
// further than distribution, which trusts a token until it expires: it refuses a
// token that claims a longer life than the token service ever issues, and decides
// each request's repository access again from RBAC (informers, no API call), so a
// removed grant bites at the next request. It counts what it refuses.
type accessController struct {
	token   *tokenVerifier
	authz   tokenauth.Authorizer
	refused *prometheus.CounterVec
	// realm is the token endpoint; a path alone ("/token") is completed with the
	// scheme and host of each request, so clients are sent back to the name and port
	// they used.
	realm, service string
}

// The option keys carrying the refusal counter, the RBAC authorizer and the token
// verifier that every access controller of one registry shares.
const (
	accessOptionMetrics  = "pullgate.metrics"
	accessOptionAuthz    = "pullgate.authz"
	accessOptionVerifier = "pullgate.verifier"
)

// tokenVerifier is distribution's token verifier, built again from its JWKS file when
// the keys that verify change (a key rotation), for every access controller at once.
type tokenVerifier struct {
	options map[string]any
	current atomic.Pointer[auth.AccessController]
}

func newTokenVerifier(options map[string]any) (*tokenVerifier, error) {
	v := &tokenVerifier{options: options}
	return v, v.reload()
}

// reload reads the JWKS file again.
func (v *tokenVerifier) reload() error {
	inner, err := auth.GetAccessController("token", v.options)
	if err != nil {
		return fmt.Errorf("registry token verifier: %w", err)
	}
	v.current.Store(&inner)
	return nil
}

func (v *tokenVerifier) Authorized(r *http.Request, access ...auth.Access) (*auth.Grant, error) {
	return (*v.current.Load()).Authorized(r, access...)
}

// lifetimeLeeway allows for clocks that differ between token services and registries.
const lifetimeLeeway = time.Minute

func newAccessController(options map[string]any) (auth.AccessController, error) {
	inner, ok := options[accessOptionVerifier].(*tokenVerifier)
	if !ok {
		var err error
		if inner, err = newTokenVerifier(options); err != nil {
			return nil, err
		}
	}
	refused, _ := options[accessOptionMetrics].(*prometheus.CounterVec)
	authz, _ := options[accessOptionAuthz].(tokenauth.Authorizer)
	realm, _ := options["realm"].(string)
	service, _ := options["service"].(string)
	return &accessController{token: inner, authz: authz, refused: refused, realm: realm, service: service}, nil
}

func (a *accessController) Authorized(r *http.Request, access ...auth.Access) (*auth.Grant, error) {
	grant, err := a.token.Authorized(r, access...)
	if err == nil {
		reason, err := a.recheck(r, access)
		if err == nil {
			return grant, nil
		}
		a.count(reason)
		return nil, &challenge{err: err, realm: a.realm, service: a.service, access: access}
	}
	a.count(refusalReason(err))
	if _, ok := err.(auth.Challenge); ok {
		return nil, &challenge{err: err, realm: a.realm, service: a.service, access: access}
	}
	return nil, err
}

func (a *accessController) count(reason string) {
	if a.refused != nil {
		a.refused.WithLabelValues(reason).Inc()
	}
}

// recheck refuses a verified token whose lifetime exceeds tokenauth.MaxLifetime,
// and any repository access that RBAC no longer grants the token's subject.
func (a *accessController) recheck(r *http.Request, access []auth.Access) (reason string, err error) {
	if a.authz == nil {
		return "", nil
	}
	claims, err := tokenauth.ParseVerified(tokenauth.BearerToken(r.Header.Get("Authorization")))
	if err != nil {
		return "invalid_token", token.ErrInvalidToken
	}
	maxLife := tokenauth.MaxLifetime + lifetimeLeeway
	if claims.Lifetime() > maxLife || time.Until(time.Unix(claims.Expiration, 0)) > maxLife {
		return "lifetime", token.ErrInvalidToken
	}
	user := claims.User()
	for _, acc := range access {
		if acc.Type != "repository" {
			continue
		}
		namespace, name, ok := tokenauth.SplitRepository(acc.Name)
		if !ok {
			return "revoked", token.ErrInsufficientScope
		}
		if allowed, _ := a.authz.Allowed(user, tokenauth.RequestFor(acc.Action, namespace, name)); !allowed {
			return "revoked", token.ErrInsufficientScope
		}
	}
	return "", nil
}

// challenge is the 401's WWW-Authenticate: Bearer realm, service, scope and, for a
// token that was refused, error="invalid_token" or error="insufficient_scope".
type challenge struct {
	err            error
	realm, service string
	access         []auth.Access
}

func (c *challenge) Error() string { return c.err.Error() }

func (c *challenge) SetHeaders(r *http.Request, w http.ResponseWriter) {
	realm := c.realm
	if strings.HasPrefix(realm, "/") {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		realm = scheme + "://" + r.Host + realm
	}
	value := "Bearer realm=" + quotedString(realm) + ",service=" + quotedString(c.service)
	if scope := scopeParam(c.access); scope != "" {
		value += ",scope=" + quotedString(scope)
	}
	switch reason := refusalReason(c.err); reason {
	case "invalid_token", "insufficient_scope":
		value += ",error=" + quotedString(reason)
	}
	w.Header().Add("WWW-Authenticate", value)
}

// quotedString is s as an RFC 9110 quoted-string: '"' and '\' are escaped with a
// backslash, and control characters, which a quoted-string cannot hold, become '?'.
// (Go's %q is not this: its \x escapes are read back as other characters.)
func quotedString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 && c != '\t' || c == 0x7f:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// scopeParam is "type:name:action,action" per resource, space-separated, in order.
func scopeParam(access []auth.Access) string {
	var order []string
	actions := map[string][]string{}
	for _, a := range access {
		key := a.Type + ":" + a.Name
		if _, seen := actions[key]; !seen {
			order = append(order, key)
		}
		if !slices.Contains(actions[key], a.Action) {
			actions[key] = append(actions[key], a.Action)
		}
	}
	scopes := make([]string, 0, len(order))
	for _, key := range order {
		scopes = append(scopes, key+":"+strings.Join(actions[key], ","))
	}
	return strings.Join(scopes, " ")
}

func refusalReason(err error) string {
	switch msg := err.Error(); msg {
	case token.ErrTokenRequired.Error():
		return "token_required"
	case token.ErrInsufficientScope.Error():
		return "insufficient_scope"
	case token.ErrInvalidToken.Error(), token.ErrMalformedToken.Error():
		return "invalid_token"
	default:
		var ch auth.Challenge
		if errors.As(err, &ch) {
			return "challenge"
		}
		return "error"
	}
}
