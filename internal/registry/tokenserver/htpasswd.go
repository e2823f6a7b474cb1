package tokenserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"pullgate.dev/pullgate/internal/rbacauthz"
)

// Htpasswd authenticates users of an htpasswd file (bcrypt hashes only, as
// distribution's htpasswd access controller): the standalone token server's users.
type Htpasswd struct {
	hashes map[string][]byte
}

// LoadHtpasswd reads an htpasswd file; any entry that is not bcrypt is refused, with
// its line.
func LoadHtpasswd(file string) (*Htpasswd, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", file, err)
	}
	h := &Htpasswd{hashes: map[string][]byte{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("htpasswd %s line %d: want user:bcrypt-hash (htpasswd -B)", file, n)
		}
		h.hashes[user] = []byte(hash)
	}
	return h, nil
}

// Authenticate refuses bare tokens: this authenticator needs a user name.
func (h *Htpasswd) Authenticate(context.Context, string) (rbacauthz.User, error) {
	return rbacauthz.User{}, ErrUnauthenticated
}

// AuthenticatePassword checks username's password.
func (h *Htpasswd) AuthenticatePassword(_ context.Context, username, password string) (rbacauthz.User, error) {
	hash, ok := h.hashes[username]
	if !ok || bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return rbacauthz.User{}, ErrUnauthenticated
	}
	return rbacauthz.User{Name: username}, nil
}

// Grant lets a user do actions on repositories matching a glob (path.Match, e.g.
// "repository-main/*"; "*" alone is every repository).
type Grant struct {
	User    string
	Repos   string
	Actions []string
}

// ParseGrant reads USER=REPO-GLOB:ACTION[,ACTION].
func ParseGrant(s string) (Grant, error) {
	user, rest, ok := strings.Cut(s, "=")
	i := strings.LastIndexByte(rest, ':')
	if !ok || user == "" || i <= 0 || i == len(rest)-1 {
		return Grant{}, fmt.Errorf("--grant %q: want USER=REPOSITORY-GLOB:ACTIONS, e.g. alice=team/*:pull,push", s)
	}
	if _, err := path.Match(rest[:i], ""); err != nil {
		return Grant{}, fmt.Errorf("--grant %q: %w", s, err)
	}
	return Grant{User: user, Repos: rest[:i], Actions: strings.Split(rest[i+1:], ",")}, nil
}

// Grants authorizes by grant lists instead of Kubernetes RBAC.
type Grants []Grant

// verbActions maps the RBAC verbs RequestFor makes back to registry actions.
var verbActions = map[string]string{"get": "pull", "update": "push", "delete": "delete"}

// Allowed answers RequestFor's requests: repository namespace/name, verb of an action.
func (g Grants) Allowed(user rbacauthz.User, req rbacauthz.Request) (bool, string) {
	repo, action := req.Namespace+"/"+req.Name, verbActions[req.Verb]
	for _, gr := range g {
		if gr.User != user.Name && gr.User != "*" {
			continue
		}
		if ok, _ := path.Match(gr.Repos, repo); !ok && gr.Repos != "*" {
			continue
		}
		for _, a := range gr.Actions {
			if a == action || a == "*" {
				return true, fmt.Sprintf("grant %s=%s:%s", gr.User, gr.Repos, strings.Join(gr.Actions, ","))
			}
		}
	}
	return false, ""
}
