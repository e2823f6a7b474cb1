package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"

	projects "pullgate.dev/pullgate/internal/openshift/project"
	"pullgate.dev/pullgate/internal/rbacauthz"
)

var subjectAccessReviewsResource = schema.GroupResource{Group: "authorization.openshift.io", Resource: "subjectaccessreviews"}

// action is authorization.openshift.io/v1's Action, inline in every review.
type action struct {
	Namespace    string `json:"namespace"`
	Verb         string `json:"verb"`
	Group        string `json:"resourceAPIGroup"`
	Resource     string `json:"resource"`
	ResourceName string `json:"resourceName"`
}

// request is the action in RBAC's terms, in namespace ns: a resource/subresource
// split, and OpenShift's legacy group mapped to the one RBAC decides in.
func (a action) request(ns string) rbacauthz.Request {
	resource, sub, _ := strings.Cut(a.Resource, "/")
	return rbacauthz.Request{Verb: a.Verb, Namespace: ns, Group: projects.DecidingGroup(a.Group, resource), Resource: resource, Subresource: sub, Name: a.ResourceName}
}

// subjectAccessReview is authorization.openshift.io/v1 (Local)SubjectAccessReview:
// an action and whom it is asked about; no user and no groups ask about the
// requester.
type subjectAccessReview struct {
	action
	User   string   `json:"user"`
	Groups []string `json:"groups"`
}

// subjectAccessReview answers `oc login`'s question (may I list and create
// projectrequests?) and `oc auth`-style checks with the same RBAC evaluator as the
// registry. Anyone may ask about themselves, as on OpenShift; asking about another
// user needs Kubernetes' own right to (create subjectaccessreviews.authorization.k8s.io).
func (s *Server) subjectAccessReview(w http.ResponseWriter, r *http.Request) {
	var review subjectAccessReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&review); err != nil {
		writeStatus(w, apierrors.NewBadRequest("reading the SubjectAccessReview: "+err.Error()))
		return
	}
	ns := review.Namespace
	if local := r.PathValue("ns"); local != "" {
		ns = local
	}
	asker := requester(r)
	subject := asker
	if review.User != "" || len(review.Groups) > 0 {
		if !s.Authz.Decide(asker, rbacauthz.Request{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}).Allowed {
			writeStatus(w, apierrors.NewForbidden(subjectAccessReviewsResource, "",
				fmt.Errorf("user %q may ask only about themselves (asking about %q needs create on subjectaccessreviews.authorization.k8s.io)", asker.Name, review.User)))
			return
		}
		subject = rbacauthz.User{Name: review.User, Groups: review.Groups}
		if review.User != "" && !slices.Contains(subject.Groups, user.AllAuthenticated) {
			subject.Groups = append(subject.Groups, user.AllAuthenticated)
		}
	}
	decision := s.Authz.Decide(subject, review.request(ns))
	reason := ""
	if decision.Allowed {
		reason = fmt.Sprintf("RBAC: allowed by %s %q of %s %q to %s %q", bindingKind(decision), decision.BindingName, decision.Role.Kind, decision.Role.Name, decision.Subject.Kind, decision.Subject.Name)
	}
	writeJSON(w, http.StatusCreated, struct {
		metav1.TypeMeta `json:",inline"`
		Namespace       string `json:"namespace,omitempty"`
		Allowed         bool   `json:"allowed"`
		Reason          string `json:"reason,omitempty"`
	}{TypeMeta: metav1.TypeMeta{Kind: "SubjectAccessReviewResponse", APIVersion: "authorization.openshift.io/v1"}, Namespace: ns, Allowed: decision.Allowed, Reason: reason})
}

func bindingKind(d rbacauthz.Decision) string {
	if d.BindingNamespace == "" {
		return "ClusterRoleBinding"
	}
	return "RoleBinding"
}
