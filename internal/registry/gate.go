package registry

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/auth"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// repositoryGate lets a request reach a repository only while the repository's
// ImageStream exists and owns its storage, and makes the ImageStream when a push
// begins. A read of a repository that does not exist is NAME_UNKNOWN, told only to a
// caller whose token would let it read there (anyone else gets distribution's 401);
// uploads already under way pass, as their start was checked.
type repositoryGate struct {
	next            http.Handler
	verifier        auth.AccessController
	repos           *repositories
	host            string
	namespaceExists func(string) bool
	log             *slog.Logger
}

func (g *repositoryGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, kind, ref := splitRoute(r.URL.Path)
	if name == "" || g.repos == nil {
		g.next.ServeHTTP(w, r)
		return
	}
	uploads := kind == "blobs" && strings.HasPrefix(ref, "uploads")
	switch {
	case uploads && r.Method == http.MethodPost, kind == "manifests" && r.Method == http.MethodPut:
		g.beginPush(w, r, name)
	case uploads:
		if !g.expiredUpload(w, r, name, ref) {
			g.next.ServeHTTP(w, r)
		}
	default:
		g.read(w, r, name)
	}
}

// beginPush makes the repository's ImageStream, for a caller allowed to push.
func (g *repositoryGate) beginPush(w http.ResponseWriter, r *http.Request, name string) {
	if !granted(r, g.verifier, name, "push") {
		g.next.ServeHTTP(w, r)
		return
	}
	err := g.repos.Ensure(r.Context(), name, g.host)
	switch {
	case err == nil:
		g.next.ServeHTTP(w, r)
	case apierrors.IsNotFound(err):
		namespace, _, _ := tokenauth.SplitRepository(name)
		_ = errcode.ServeJSON(w, errcode.ErrorCodeNameUnknown.WithMessage(namespaceMissing(name, namespace)))
	default:
		g.log.Error("a push could not begin", "repository", name, "err", err)
		_ = errcode.ServeJSON(w, errcode.ErrorCodeUnavailable.WithMessage(
			fmt.Sprintf("repository %s: its imagestream could not be made or its storage read; try again", name)))
	}
}

// read passes a request to a repository that exists.
func (g *repositoryGate) read(w http.ResponseWriter, r *http.Request, name string) {
	servable, err := g.repos.Servable(r.Context(), name)
	if err != nil {
		g.log.Error("repository owner unreadable", "repository", name, "err", err)
		_ = errcode.ServeJSON(w, errcode.ErrorCodeUnavailable.WithMessage("registry storage is unavailable; try again"))
		return
	}
	action := "pull"
	if r.Method == http.MethodDelete {
		action = "delete"
	}
	if servable || !granted(r, g.verifier, name, action) {
		g.next.ServeHTTP(w, r)
		return
	}
	if _, kind, _ := splitRoute(r.URL.Path); kind == "referrers" {
		// The Referrers API never answers 404: nothing refers to anything here.
		serveIndex(w, r, "", nil)
		return
	}
	msg := fmt.Sprintf("repository %s not found: nothing was pushed there, or its imagestream was deleted", name)
	if namespace, _, ok := tokenauth.SplitRepository(name); ok && g.namespaceExists != nil && !g.namespaceExists(namespace) {
		msg = namespaceMissing(name, namespace)
	}
	_ = errcode.ServeJSON(w, errcode.ErrorCodeNameUnknown.WithMessage(msg))
}

func namespaceMissing(name, namespace string) string {
	return fmt.Sprintf("repository %s: namespace %q does not exist; repositories are <namespace>/<name> (kubectl create namespace %s)", name, namespace, namespace)
}

// granted reports whether the request's token grants action on repository name.
func granted(r *http.Request, verifier auth.AccessController, name, action string) bool {
	_, err := verifier.Authorized(r, auth.Access{Resource: auth.Resource{Type: "repository", Name: name}, Action: action})
	return err == nil
}
