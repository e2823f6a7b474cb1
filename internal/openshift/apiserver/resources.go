package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	projects "pullgate.dev/pullgate/internal/openshift/project"
	"pullgate.dev/pullgate/internal/rbacauthz"
)

var (
	projectsResource = schema.GroupResource{Group: "project.openshift.io", Resource: "projects"}
)

// project is project.openshift.io/v1 Project: a namespace.
type project struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Finalizers []corev1.FinalizerName `json:"finalizers,omitempty"`
	} `json:"spec"`
	Status struct {
		Phase corev1.NamespacePhase `json:"phase,omitempty"`
	} `json:"status"`
}

func toProject(ns *corev1.Namespace) project {
	p := project{TypeMeta: metav1.TypeMeta{Kind: "Project", APIVersion: "project.openshift.io/v1"}, ObjectMeta: ns.ObjectMeta}
	p.ManagedFields = nil
	p.Spec.Finalizers = ns.Spec.Finalizers
	p.Status.Phase = ns.Status.Phase
	return p
}

// mayGet reports whether u may get namespace ns: what makes it one of u's projects.
func (s *Server) mayGet(u rbacauthz.User, ns string) bool {
	return s.Authz.Decide(u, rbacauthz.Request{Verb: "get", Namespace: ns, Resource: "namespaces", Name: ns}).Allowed
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) {
	u := requester(r)
	nss, err := s.Client.CoreV1().Namespaces().List(r.Context(), metav1.ListOptions{LabelSelector: r.URL.Query().Get("labelSelector")})
	if err != nil {
		writeStatus(w, err)
		return
	}
	list := struct {
		metav1.TypeMeta `json:",inline"`
		metav1.ListMeta `json:"metadata"`
		Items           []project `json:"items"`
	}{TypeMeta: metav1.TypeMeta{Kind: "ProjectList", APIVersion: "project.openshift.io/v1"}, Items: []project{}}
	for i := range nss.Items {
		if s.mayGet(u, nss.Items[i].Name) {
			list.Items = append(list.Items, toProject(&nss.Items[i]))
		}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	u := requester(r)
	if !s.mayGet(u, name) {
		writeStatus(w, apierrors.NewForbidden(projectsResource, name, fmt.Errorf("User %q cannot get project %q", u.Name, name)))
		return
	}
	ns, err := s.Client.CoreV1().Namespaces().Get(r.Context(), name, metav1.GetOptions{})
	if writeProjectError(w, name, err) {
		return
	}
	writeJSON(w, http.StatusOK, toProject(ns))
}

// writeProjectError writes err, if any, as the project's: a missing namespace is a
// missing project.
func writeProjectError(w http.ResponseWriter, name string, err error) bool {
	switch {
	case apierrors.IsNotFound(err):
		writeStatus(w, apierrors.NewNotFound(projectsResource, name))
	case err != nil:
		writeStatus(w, err)
	}
	return err != nil
}

// mayRequestProject answers oc new-project's first question: a Success status when
// the API server let the user list projectrequests.
func (s *Server) mayRequestProject(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
}

// requestProject is `oc new-project`: project.Create for the requester. The API
// server has already checked that the user may create projectrequests.
func (s *Server) requestProject(w http.ResponseWriter, r *http.Request) {
	var req struct {
		metav1.ObjectMeta `json:"metadata"`
		DisplayName       string `json:"displayName"`
		Description       string `json:"description"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeStatus(w, apierrors.NewBadRequest("reading the ProjectRequest: "+err.Error()))
		return
	}
	created, err := projects.Create(r.Context(), s.Client, projects.Request{Name: req.Name, DisplayName: req.DisplayName, Description: req.Description}, requester(r).Name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, toProject(created))
}

// deleteProject is `oc delete project`: for those who may delete the project in its
// own namespace (its admin, as on OpenShift) or delete the namespace itself. The
// project is asked for in OpenShift's legacy group: every user holds delete on
// projects.project.openshift.io cluster-wide, only so that the API server passes
// the request here.
func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	u := requester(r)
	mayDelete := s.Authz.Decide(u, rbacauthz.Request{Verb: "delete", Namespace: name, Group: "", Resource: "projects", Name: name}).Allowed ||
		s.Authz.Decide(u, rbacauthz.Request{Verb: "delete", Resource: "namespaces", Name: name}).Allowed
	if !mayDelete {
		writeStatus(w, apierrors.NewForbidden(projectsResource, name, fmt.Errorf("User %q cannot delete project %q: it needs the admin role in it (pullgate policy add-role-to-user admin %s -n %s)", u.Name, name, u.Name, name)))
		return
	}
	if writeProjectError(w, name, s.Client.CoreV1().Namespaces().Delete(r.Context(), name, metav1.DeleteOptions{})) {
		return
	}
	writeJSON(w, http.StatusOK, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess,
		Details: &metav1.StatusDetails{Name: name, Group: projectsResource.Group, Kind: "projects"}})
}

// accessReview is oc policy who-can: every user and group RBAC lets do the action,
// in a namespace (local) or the cluster.
func (s *Server) accessReview(w http.ResponseWriter, r *http.Request) {
	var review action
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&review); err != nil {
		writeStatus(w, apierrors.NewBadRequest("reading the review: "+err.Error()))
		return
	}
	ns := r.PathValue("ns")
	access := projects.WhoCan(s.Authz, review.request(ns))
	writeJSON(w, http.StatusCreated, struct {
		metav1.TypeMeta `json:",inline"`
		Namespace       string   `json:"namespace,omitempty"`
		Users           []string `json:"users"`
		Groups          []string `json:"groups"`
		EvaluationError string   `json:"evalutionError"` // sic, as OpenShift's API spells it
	}{TypeMeta: metav1.TypeMeta{Kind: "ResourceAccessReviewResponse", APIVersion: "authorization.openshift.io/v1"}, Namespace: ns, Users: access.Users, Groups: access.Groups})
}
