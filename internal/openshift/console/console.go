// Package console is pullgate's web console, served on loopback for one user with the
// user's own kubeconfig credentials (as `kubectl proxy` does): projects, image
// streams, who can pull what and why, pods' pull state with the `explain pull`
// diagnosis, service accounts' pull secrets, and the seed's actions, each done by the
// same code as the CLI (package project). It acts as the user and never with
// pullgate's identity.
//
// Only the holder of the printed URL can drive it: the URL's one-time token becomes a
// session cookie (HttpOnly, SameSite=Strict), every form carries a token bound to the
// session, a request from another origin or for another host name (DNS rebinding) is
// refused, and no CORS header is ever sent. Pages work without JavaScript; there is
// none, and no asset from outside the binary.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/location"
)

//go:embed templates/*.html static/*
var assets embed.FS

var pages = template.Must(template.New("").Funcs(funcs).ParseFS(assets, "templates/*.html"))

const cookieName = "pullgate-console"

// Server is one user's console.
type Server struct {
	// Config is the user's: every read and write is the user's own.
	Config *rest.Config
	// RegistryHost is the integrated registry's name for pull commands, and
	// RegistryHosts every name it answers to.
	RegistryHost  string
	RegistryHosts []string
	Log           *slog.Logger

	client  kubernetes.Interface
	dynamic dynamic.Interface

	// loginToken is the printed URL's; session the cookie it is traded for.
	loginToken string
	mu         sync.Mutex
	session    string
	// rbac evaluates RBAC for the pod page's diagnosis from informers started once,
	// with the user's own client, for the console's life (nil: the user may not
	// read RBAC); rbacCtx bounds them.
	rbacOnce sync.Once
	rbac     *rbacauthz.Authorizer
	rbacCtx  context.Context
	hosts    []string // the Host headers accepted: this listener's own names
	base     string   // http://host:port of the listener
}

// New prepares a console for the user of cfg; Serve starts it on a listener.
func New(cfg *rest.Config) (*Server, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Server{Config: cfg, client: client, dynamic: dyn, loginToken: randomHex(32), Log: slog.Default(), rbacCtx: context.Background()}, nil
}

// URL is the address to open, with the one-time login token, for listener l.
func (s *Server) URL(l net.Listener) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.base = "http://" + l.Addr().String()
	return s.base + "/login?token=" + s.loginToken
}

// Serve answers on l until it is closed. l must be on loopback.
func (s *Server) Serve(l net.Listener) error {
	addr := l.Addr().(*net.TCPAddr)
	if !addr.IP.IsLoopback() {
		return &net.OpError{Op: "listen", Net: "tcp", Addr: addr, Err: errNotLoopback}
	}
	port := l.Addr().String()[strings.LastIndex(l.Addr().String(), ":"):]
	s.hosts = []string{l.Addr().String(), "localhost" + port}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10e9}
	return srv.Serve(l)
}

type errString string

func (e errString) Error() string { return string(e) }

const errNotLoopback = errString("the console listens on loopback only")

// Handler is the console's routes behind its guards.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", s.login)
	mux.Handle("GET /static/", http.FileServerFS(assets))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/projects", http.StatusSeeOther) })
	mux.HandleFunc("GET /projects", s.projects)
	mux.HandleFunc("GET /projects/{ns}", s.project)
	mux.HandleFunc("GET /projects/{ns}/imagestreams/{name}", s.imageStream)
	mux.HandleFunc("GET /projects/{ns}/pods/{name}", s.pod)
	mux.HandleFunc("GET /projects/{ns}/serviceaccounts/{name}", s.serviceAccount)
	mux.HandleFunc("GET /graph", s.graph)
	mux.HandleFunc("GET /graph.svg", s.graphSVG)
	mux.HandleFunc("POST /projects/{ns}/grant", s.grant)
	mux.HandleFunc("POST /projects/{ns}/revoke", s.revoke)
	mux.HandleFunc("POST /projects/{ns}/secrets", s.createSecret)
	mux.HandleFunc("POST /projects/{ns}/serviceaccounts/{name}/link", s.link)
	mux.HandleFunc("POST /projects/{ns}/serviceaccounts/{name}/unlink", s.unlink)
	return s.guard(mux)
}

// guard refuses what is not this user's browser on this listener, and sets the
// headers every answer carries.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		if len(s.hosts) > 0 && !contains(s.hosts, r.Host) {
			http.Error(w, "this console answers only to "+strings.Join(s.hosts, " and "), http.StatusMisdirectedRequest)
			return
		}
		if r.URL.Path == "/login" || strings.HasPrefix(r.URL.Path, "/static/") {
			next.ServeHTTP(w, r)
			return
		}
		if !s.validSession(r) {
			http.Error(w, "open the console with the URL pullgate printed (it holds a login token)", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if origin := r.Header.Get("Origin"); origin != "" && !contains(s.hosts, strings.TrimPrefix(origin, "http://")) {
				http.Error(w, "refused: a form from another site", http.StatusForbidden)
				return
			}
			if err := r.ParseMultipartForm(1 << 20); err != nil && err != http.ErrNotMultipart {
				http.Error(w, "the form could not be read: "+err.Error(), http.StatusBadRequest)
				return
			}
			if !hmac.Equal([]byte(r.FormValue("csrf")), []byte(s.csrfToken())) {
				http.Error(w, "refused: the form's token is not this session's; reload the page", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// login trades the URL's token for a session cookie, once: a URL seen later (in a
// shell's history, a screenshot) logs nobody in.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	token := s.loginToken
	ok := token != "" && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(token)) == 1
	if ok {
		s.loginToken = ""
		s.session = randomHex(32)
	}
	session := s.session
	s.mu.Unlock()
	if !ok {
		http.Error(w, "this login link is not valid, or was used already: run pullgate console --url for a new one (pullgate up's console), or pullgate console again", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: session, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/projects", http.StatusSeeOther)
}

func (s *Server) validSession(r *http.Request) bool {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.session)) == 1
}

// csrfToken is bound to the session: forms carry it, and no other site can read it.
func (s *Server) csrfToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := hmac.New(sha256.New, []byte(s.session))
	m.Write([]byte("csrf"))
	return hex.EncodeToString(m.Sum(nil))
}

// authorizer is the user's RBAC evaluator, synced once and then kept current by its
// informers, instead of listing every role and binding at each page.
func (s *Server) authorizer() *rbacauthz.Authorizer {
	s.rbacOnce.Do(func() {
		ctx := s.rbacCtx
		if ctx == nil {
			ctx = context.Background()
		}
		if a, err := rbacauthz.NewForClient(ctx, s.client); err == nil {
			s.rbac = a
		} else {
			s.Log.Warn("RBAC is not readable as this user: the pod page's diagnosis leaves the registry's decision out", "err", err)
		}
	})
	return s.rbac
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Start serves a console for the user of cfg on addr (loopback; port 0 picks one)
// until ctx ends, and returns the URL to open. The integrated registry's names are
// read from where it publishes them, when it does.
func Start(ctx context.Context, cfg *rest.Config, addr string, log *slog.Logger) (*Server, string, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, "", err
	}
	if log != nil {
		s.Log = log
	}
	s.rbacCtx = ctx
	if info, err := location.Read(ctx, s.client); err == nil && len(info.Hostnames) > 0 {
		s.RegistryHost, s.RegistryHosts = info.Hostnames[0], info.Hostnames
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("console: %w", err)
	}
	if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		l.Close()
		return nil, "", fmt.Errorf("console: %s is not a loopback address: the console serves only this machine", addr)
	}
	go func() { <-ctx.Done(); l.Close() }()
	go func() {
		if err := s.Serve(l); err != nil && ctx.Err() == nil {
			s.Log.Error("console stopped", "err", err)
		}
	}()
	return s, s.URL(l), nil
}
