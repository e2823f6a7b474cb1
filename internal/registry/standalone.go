package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // distribution's own access controllers
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/distribution/distribution/v3/registry/handlers"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// StandaloneConfig is a registry with no Kubernetes behind it: users from an htpasswd
// file, with Basic auth, or tokens from a separate token server (delegated
// authentication, as the seed's privateregistry.example.com and sso.example.com).
type StandaloneConfig struct {
	Storage    configuration.Storage
	HTTPSecret string
	// Htpasswd, when set, is Basic auth against this file.
	Htpasswd string
	// Token auth, when TokenRealm is set: the realm's URL, the service and issuer the
	// tokens name, and the token server's keys (a JWKS file).
	TokenRealm, TokenService, TokenIssuer, TokenJWKS string
	Log                                              *slog.Logger
}

// NewStandalone builds the standalone registry's handler. Every request is logged
// with the user it was made as, so one can see which credential pulled what.
func NewStandalone(ctx context.Context, cfg StandaloneConfig) (h http.Handler, err error) {
	dc := &configuration.Configuration{Storage: cfg.Storage}
	switch {
	case cfg.Htpasswd != "" && cfg.TokenRealm != "":
		return nil, fmt.Errorf("--htpasswd and --token-realm: choose Basic auth or token auth")
	case cfg.Htpasswd != "":
		dc.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "pullgate", "path": cfg.Htpasswd}}
	case cfg.TokenRealm != "":
		dc.Auth = configuration.Auth{"token": configuration.Parameters{
			"realm": cfg.TokenRealm, "service": cfg.TokenService, "issuer": cfg.TokenIssuer, "jwks": cfg.TokenJWKS,
			"signingalgorithms": []any{"ES256", "EdDSA"},
		}}
	default:
		return nil, fmt.Errorf("a standalone registry needs --htpasswd or --token-realm")
	}
	dc.HTTP.Secret = cfg.HTTPSecret
	dc.Log.AccessLog.Disabled = true
	dc.Log.Level = "warn"
	if _, ok := dc.Storage["delete"]; !ok {
		dc.Storage["delete"] = configuration.Parameters{"enabled": true}
	}
	dc.Storage["redirect"] = configuration.Parameters{"disable": true}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("registry configuration: %v", r)
		}
	}()
	app := handlers.NewApp(ctx, dc)
	return &accessLog{next: app, log: cfg.Log}, nil
}

// accessLog logs method, path, status and user of each request under /v2/.
type accessLog struct {
	next http.Handler
	log  *slog.Logger
}

func (a *accessLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	begin := time.Now()
	a.next.ServeHTTP(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if strings.HasPrefix(r.URL.Path, "/v2/") && r.URL.Path != "/v2/" {
		a.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", status, "user", logUser(r), "took", time.Since(begin).Round(time.Millisecond))
	}
}

// logUser is the Basic-auth user, or the subject of a bearer token (read only for
// the log: distribution has verified it).
func logUser(r *http.Request) string {
	if user, _, ok := r.BasicAuth(); ok {
		return user
	}
	claims, err := tokenauth.ParseVerified(tokenauth.BearerToken(r.Header.Get("Authorization")))
	if err != nil || claims.Subject == "" {
		return "-"
	}
	return claims.Subject
}
