package agent

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// PullAuthorizer says whether a user may pull a repository of the integrated
// registry now, as the registry would decide it.
type PullAuthorizer interface {
	MayPull(ctx context.Context, user rbacauthz.User, repository string) (bool, error)
}

// RBACPullAuthorizer decides from RBAC informers the process already holds (the
// registry's, inside pullgate up): no API call.
type RBACPullAuthorizer struct {
	Authz tokenauth.Authorizer
}

// MayPull implements PullAuthorizer.
func (r RBACPullAuthorizer) MayPull(_ context.Context, user rbacauthz.User, repository string) (bool, error) {
	req, ok := pullRequest(repository)
	if !ok {
		return false, nil
	}
	allowed, _ := r.Authz.Allowed(user, req)
	return allowed, nil
}

// pullRequest is the RBAC request a pull of repository needs.
func pullRequest(repository string) (rbacauthz.Request, bool) {
	namespace, name, ok := tokenauth.SplitRepository(repository)
	if !ok {
		return rbacauthz.Request{}, false
	}
	return tokenauth.RequestFor("pull", namespace, name), true
}

// SubjectAccessReviews decides with a SubjectAccessReview, which a node may create
// (the Node authorizer's rules): one API call, for a node that holds no RBAC
// informers of its own.
type SubjectAccessReviews struct {
	Client kubernetes.Interface
}

// MayPull implements PullAuthorizer.
func (s SubjectAccessReviews) MayPull(ctx context.Context, user rbacauthz.User, repository string) (bool, error) {
	req, ok := pullRequest(repository)
	if !ok {
		return false, nil
	}
	review, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user.Name, Groups: user.Groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: req.Namespace, Verb: req.Verb, Group: req.Group, Resource: req.Resource,
				Subresource: req.Subresource, Name: req.Name,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("asking whether %s may pull %s: %w", user.Name, repository, err)
	}
	return review.Status.Allowed, nil
}
