package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"pullgate.dev/pullgate/internal/registry/roles"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// explainDenied rewrites the body of a 401 that refuses a valid token for lack of
// scope: instead of distribution's "authentication required", the client is told
// who was refused what — only the actions refused, not every one the request
// needed — and which command grants it. Status and challenge stay as they are, so
// clients behave exactly as before.
type explainDenied struct {
	next  http.Handler
	authz tokenauth.Authorizer
}

func (h explainDenied) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		h.next.ServeHTTP(w, r)
		return
	}
	h.next.ServeHTTP(&deniedWriter{ResponseWriter: w, r: r, authz: h.authz}, r)
}

type deniedWriter struct {
	http.ResponseWriter
	r        *http.Request
	authz    tokenauth.Authorizer
	replaced bool
}

var scopeParamRE = regexp.MustCompile(`scope="([^"]*)"`)

func (d *deniedWriter) WriteHeader(code int) {
	challenge := d.Header().Get("WWW-Authenticate")
	if code != http.StatusUnauthorized || !strings.Contains(challenge, `error="insufficient_scope"`) {
		d.ResponseWriter.WriteHeader(code)
		return
	}
	m := scopeParamRE.FindStringSubmatch(challenge)
	if m == nil {
		d.ResponseWriter.WriteHeader(code)
		return
	}
	claims, err := tokenauth.ParseVerified(tokenauth.BearerToken(d.r.Header.Get("Authorization")))
	if err != nil {
		d.ResponseWriter.WriteHeader(code)
		return
	}
	var messages []string
	for _, scope := range strings.Fields(m[1]) {
		for _, refused := range d.refused(claims, scope) {
			messages = append(messages, deniedMessage(claims.User().Name, refused))
		}
	}
	if len(messages) == 0 {
		d.ResponseWriter.WriteHeader(code)
		return
	}
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": "DENIED", "message": strings.Join(messages, "; ")}}})
	d.Header().Del("Content-Length")
	d.Header().Set("Content-Type", "application/json")
	d.ResponseWriter.WriteHeader(code)
	_, _ = d.ResponseWriter.Write(append(body, '\n'))
	d.replaced = true
}

func (d *deniedWriter) Write(b []byte) (int, error) {
	if d.replaced {
		return len(b), nil
	}
	return d.ResponseWriter.Write(b)
}

// refusal is one action on one resource that a request needed and was refused.
type refusal struct {
	typ, name, action string
}

// refused lists the actions of scope ("type:name:action,action") that the token does
// not grant, or that RBAC no longer allows its subject.
func (d *deniedWriter) refused(claims tokenauth.Claims, scope string) []refusal {
	typ, rest, _ := strings.Cut(scope, ":")
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return nil
	}
	name := rest[:i]
	var out []refusal
	for _, action := range strings.Split(rest[i+1:], ",") {
		ok := claims.Grants(typ, name, action)
		if ok && typ == "repository" && d.authz != nil {
			namespace, stream, split := tokenauth.SplitRepository(name)
			ok = split
			if split {
				ok, _ = d.authz.Allowed(claims.User(), tokenauth.RequestFor(action, namespace, stream))
			}
		}
		if !ok {
			out = append(out, refusal{typ: typ, name: name, action: action})
		}
	}
	return out
}

// deniedMessage says who may not do what to a repository, and how to allow it.
func deniedMessage(user string, r refusal) string {
	if r.typ != "repository" {
		return fmt.Sprintf("%s is not allowed %s on %s:%s", user, r.action, r.typ, r.name)
	}
	namespace, _, ok := tokenauth.SplitRepository(r.name)
	if !ok {
		return fmt.Sprintf("%s is not a repository of this registry: a repository is <namespace>/<path>, in a Kubernetes namespace you may push to (e.g. NAMESPACE/%s)", r.name, r.name)
	}
	role, verb := roles.ImagePuller, "pull from"
	switch r.action {
	case "push", "*":
		role, verb = roles.ImagePusher, "push to"
	case "delete":
		role, verb = "registry-editor", "delete from"
	}
	return fmt.Sprintf("%s may not %s %s: it needs %s in namespace %s (pullgate policy add-role-to-user %s %s -n %s)",
		user, verb, r.name, role, namespace, role, user, namespace)
}
