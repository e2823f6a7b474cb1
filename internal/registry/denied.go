package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"pullgate.dev/pullgate/internal/registryroles"
)

// explainDenied rewrites the body of a 401 that refuses a valid token for lack of
// scope: instead of distribution's "authentication required", the client is told
// who was refused what, and which command grants it. Status and challenge stay as
// they are, so clients behave exactly as before.
type explainDenied struct {
	next http.Handler
}

func (h explainDenied) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		h.next.ServeHTTP(w, r)
		return
	}
	h.next.ServeHTTP(&deniedWriter{ResponseWriter: w, r: r}, r)
}

type deniedWriter struct {
	http.ResponseWriter
	r        *http.Request
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
	user := tokenUser(d.r.Header.Get("Authorization"))
	var messages []string
	for _, scope := range strings.Fields(m[1]) {
		messages = append(messages, deniedMessage(user.Name, scope))
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

// deniedMessage says who may not do what to a repository, and how to allow it.
func deniedMessage(user, scope string) string {
	typ, rest, _ := strings.Cut(scope, ":")
	i := strings.LastIndexByte(rest, ':')
	if typ != "repository" || i < 0 {
		return fmt.Sprintf("%s is not allowed %s", user, scope)
	}
	name, actions := rest[:i], rest[i+1:]
	namespace, _, _ := strings.Cut(name, "/")
	role, verb := registryroles.ImagePuller, "pull from"
	if strings.Contains(actions, "push") || strings.Contains(actions, "*") {
		role, verb = registryroles.ImagePusher, "push to"
	} else if strings.Contains(actions, "delete") {
		role, verb = "registry-editor", "delete from"
	}
	return fmt.Sprintf("%s may not %s %s: it needs %s in namespace %s (pullgate policy add-role-to-user %s %s -n %s)",
		user, verb, name, role, namespace, role, user, namespace)
}
