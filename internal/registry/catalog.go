package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/auth"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// catalog serves /v2/_catalog with only the repositories the caller may pull.
type catalog struct {
	verifier   auth.AccessController
	enumerator distribution.RepositoryEnumerator
	authz      tokenauth.Authorizer
	repos      *repositories // nil: every stored repository exists
}

func (c *catalog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	access := auth.Access{Resource: auth.Resource{Type: "registry", Name: "catalog"}, Action: "*"}
	if !authorize(w, r, c.verifier, access) {
		return
	}
	// The token was verified above; its claims say who the caller is.
	user := requestUser(r)

	n := -1
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			_ = errcode.ServeJSON(w, errcode.ErrorCodePaginationNumberInvalid.WithMessage("n must be a non-negative integer"))
			return
		}
		n = v
	}
	last := r.URL.Query().Get("last")

	var names []string
	err := c.enumerator.Enumerate(r.Context(), func(name string) error {
		if name <= last {
			return nil
		}
		namespace, stream, ok := tokenauth.SplitRepository(name)
		if !ok {
			return nil
		}
		if allowed, _ := c.authz.Allowed(user, tokenauth.RequestFor("pull", namespace, stream)); !allowed {
			return nil
		}
		if c.repos != nil {
			if servable, err := c.repos.Servable(r.Context(), name); err != nil || !servable {
				return err
			}
		}
		names = append(names, name)
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	sort.Strings(names)
	if n >= 0 && len(names) > n {
		names = names[:n]
		if n > 0 {
			next := url.URL{Path: "/v2/_catalog", RawQuery: url.Values{"n": {strconv.Itoa(n)}, "last": {names[n-1]}}.Encode()}
			w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", next.String()))
		}
	}
	if names == nil {
		names = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string][]string{"repositories": names})
}

// authorize answers the request itself, as distribution would, unless the token
// grants access: a 401 with the challenge, or a 400 when verification failed.
func authorize(w http.ResponseWriter, r *http.Request, verifier auth.AccessController, access auth.Access) bool {
	_, err := verifier.Authorized(r, access)
	if err == nil {
		return true
	}
	if ch, ok := err.(auth.Challenge); ok {
		ch.SetHeaders(r, w)
		_ = errcode.ServeJSON(w, errcode.ErrorCodeUnauthorized)
		return false
	}
	w.WriteHeader(http.StatusBadRequest)
	return false
}

// requestUser is who the request's token, already verified, was issued to.
func requestUser(r *http.Request) rbacauthz.User {
	claims, err := tokenauth.ParseVerified(tokenauth.BearerToken(r.Header.Get("Authorization")))
	if err != nil {
		return tokenauth.Anonymous
	}
	return claims.User()
}
