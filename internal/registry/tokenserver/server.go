// Package tokenserver is the registry's token service (Docker token-auth spec): it
// turns a Kubernetes token, sent as the Basic-auth password, into a short-lived
// registry token that grants exactly the actions Kubernetes RBAC allows — pull is get
// on imagestreams/layers, push is update, delete is delete on imagestreams — each
// checked on its own, so one denied action never fails the whole request.
package tokenserver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// Authenticator maps a Kubernetes token to a user.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (rbacauthz.User, error)
}

// knownGood is an Authenticator that remembers the credentials it recently accepted.
type knownGood interface {
	KnownGood(token string) bool
	WellFormed(token string) bool
}

// TokenSigner signs registry tokens: a Signer, or keys that rotate.
type TokenSigner interface {
	Sign(tokenauth.Token) (string, error)
}

// Server is the token endpoint.
type Server struct {
	Issuer   string
	Service  string
	Lifetime time.Duration
	Signer   TokenSigner
	Authn    Authenticator
	Authz    tokenauth.Authorizer
	// Limiter, when set, answers 429 to an address that keeps failing to log in.
	Limiter *FailureLimiter
	Log     *slog.Logger
	Metrics *Metrics
}

type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the token endpoint takes GET")
		return
	}
	q := r.URL.Query()
	if svc := q.Get("service"); svc != "" && svc != s.Service {
		writeError(w, http.StatusBadRequest, "UNSUPPORTED", "unknown service "+quote(svc)+"; this token service issues tokens for "+quote(s.Service))
		return
	}
	scopes, err := ParseScopes(q["scope"])
	if err != nil {
		var se *ScopeError
		errors.As(err, &se)
		s.Metrics.observeRequest("bad_scope")
		writeError(w, http.StatusBadRequest, se.Code, se.Error())
		return
	}
	if v := s.check(r); v.Limited {
		s.Metrics.observeRequest("rate_limited")
		w.Header().Set("Retry-After", retryAfter(v.Wait))
		msg := "too many failed logins from " + clientHost(r)
		if v.Why == "credential" {
			msg = "too many failed logins with this credential"
		}
		writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", msg+"; try again in "+retryAfter(v.Wait)+" s")
		return
	}
	user, err := s.authenticate(r)
	if err != nil {
		s.Metrics.observeRequest("unauthenticated")
		status := http.StatusUnauthorized
		if !errors.Is(err, ErrUnauthenticated) {
			status = http.StatusServiceUnavailable
		} else {
			s.Limiter.Failed(r)
		}
		s.Log.Info("token refused", "reason", err.Error(), "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Basic realm="pullgate"`)
		writeError(w, status, "UNAUTHORIZED", err.Error()+": log in with a Kubernetes token as the password (pullgate registry login, or kubectl create token)")
		return
	}

	var access []*token.ResourceActions
	var denied []string
	for _, sc := range scopes {
		granted, deniedActions := s.authorize(user, sc)
		if len(granted) > 0 {
			access = append(access, &token.ResourceActions{Type: sc.Type, Class: sc.Class, Name: sc.Name, Actions: granted})
		}
		for _, d := range deniedActions {
			denied = append(denied, sc.Type+":"+sc.Name+":"+d)
		}
	}
	lifetime := min(s.Lifetime, tokenauth.MaxLifetime)
	if lifetime <= 0 {
		lifetime = tokenauth.MaxLifetime
	}
	now := time.Now()
	jwt, err := s.Signer.Sign(tokenauth.Token{Issuer: s.Issuer, Subject: user.Name, Groups: user.Groups, Audience: s.Service, Access: access, IssuedAt: now, Lifetime: lifetime})
	if err != nil {
		s.Log.Error("signing a registry token", "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "could not sign a token")
		return
	}
	s.Metrics.observeRequest("issued")
	s.Metrics.observeGrants(access, len(denied))
	s.Log.Debug("token issued", "user", user.Name, "granted", grantedList(access), "denied", denied)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(tokenResponse{
		Token: jwt, AccessToken: jwt, ExpiresIn: int(lifetime.Seconds()), IssuedAt: now.UTC().Format(time.RFC3339),
	})
}

func (s *Server) authenticate(r *http.Request) (rbacauthz.User, error) {
	username, password, ok := r.BasicAuth()
	if !ok {
		if r.Header.Get("Authorization") != "" {
			return rbacauthz.User{}, ErrUnauthenticated
		}
		return tokenauth.Anonymous, nil
	}
	if password == "" {
		return rbacauthz.User{}, ErrUnauthenticated
	}
	if pa, ok := s.Authn.(PasswordAuthenticator); ok {
		return pa.AuthenticatePassword(r.Context(), username, password)
	}
	return s.Authn.Authenticate(r.Context(), password)
}

// check asks the limiter whether r may log in now, telling it whether r's
// credential was accepted recently or looks like a token the API server could accept.
func (s *Server) check(r *http.Request) Verdict {
	var good, wellFormed bool
	if _, password, ok := r.BasicAuth(); ok {
		if kg, ok := s.Authn.(knownGood); ok {
			good = kg.KnownGood(password)
			wellFormed = kg.WellFormed(password)
		}
	}
	return s.Limiter.Check(r, good, wellFormed)
}

// PasswordAuthenticator is an Authenticator that checks a user name and password
// (the standalone token server's htpasswd users) rather than a bearer token.
type PasswordAuthenticator interface {
	AuthenticatePassword(ctx context.Context, username, password string) (rbacauthz.User, error)
}

// authorize checks each action of a scope on its own.
func (s *Server) authorize(user rbacauthz.User, sc Scope) (granted, denied []string) {
	if sc.Type == "registry" {
		// The catalog lists only what the caller may pull, so anyone may ask for it.
		return []string{"*"}, nil
	}
	namespace, name, ok := tokenauth.SplitRepository(sc.Name)
	if !ok {
		// Repositories are <namespace>/<path>; nothing else exists.
		return nil, sc.Actions
	}
	actions := sc.Actions
	if contains(actions, "*") {
		actions = []string{"pull", "push", "delete"}
	}
	for _, a := range actions {
		if allowed, _ := s.Authz.Allowed(user, tokenauth.RequestFor(a, namespace, name)); allowed {
			granted = append(granted, a)
		} else {
			denied = append(denied, a)
		}
	}
	if contains(sc.Actions, "*") && len(denied) == 0 {
		granted = []string{"*"}
	}
	return granted, denied
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func grantedList(access []*token.ResourceActions) []string {
	out := make([]string, 0, len(access))
	for _, a := range access {
		out = append(out, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	return out
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

// writeError answers with the registry's error body: {"errors":[{"code","message"}]}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
}
