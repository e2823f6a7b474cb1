package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	projects "pullgate.dev/pullgate/internal/openshift/project"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

var (
	projectsResource     = schema.GroupResource{Group: "project.openshift.io", Resource: "projects"}
	imageStreamsResource = schema.GroupResource{Group: "image.openshift.io", Resource: "imagestreams"}
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

// imageStream is image.openshift.io/v1 ImageStream, as much as oc reads of it.
type imageStream struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct{}          `json:"spec"`
	Status            imageStreamStatus `json:"status"`
}

type imageStreamStatus struct {
	DockerImageRepository       string     `json:"dockerImageRepository"`
	PublicDockerImageRepository string     `json:"publicDockerImageRepository,omitempty"`
	Tags                        []namedTag `json:"tags,omitempty"`
}

type namedTag struct {
	Tag   string     `json:"tag"`
	Items []tagEvent `json:"items"`
}

type tagEvent struct {
	Created              metav1.Time `json:"created"`
	DockerImageReference string      `json:"dockerImageReference"`
	Image                string      `json:"image"`
	Generation           int64       `json:"generation"`
}

func (s *Server) toImageStream(is *imageapi.ImageStream) imageStream {
	out := imageStream{TypeMeta: metav1.TypeMeta{Kind: "ImageStream", APIVersion: "image.openshift.io/v1"}, ObjectMeta: is.ObjectMeta}
	out.ManagedFields = nil
	repo := is.Status.DockerImageRepository
	if repo == "" {
		repo = s.RegistryHost + "/" + is.Namespace + "/" + is.Name
	}
	out.Status.DockerImageRepository = repo
	for _, t := range is.Status.Tags {
		tag := namedTag{Tag: t.Tag}
		for _, ev := range t.Items {
			tag.Items = append(tag.Items, tagEvent{Created: ev.Created, DockerImageReference: repo + "@" + ev.Digest, Image: ev.Digest})
		}
		out.Status.Tags = append(out.Status.Tags, tag)
	}
	return out
}

// storedStreams are pullgate's ImageStreams in ns (every namespace when ns is ""),
// and the list's resource version.
func (s *Server) storedStreams(ctx context.Context, ns string) ([]imageapi.ImageStream, string, error) {
	list, err := s.Dynamic.Resource(imageapi.GVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, "", err
	}
	out := make([]imageapi.ImageStream, 0, len(list.Items))
	for i := range list.Items {
		var is imageapi.ImageStream
		if runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, &is) == nil {
			out = append(out, is)
		}
	}
	return out, list.GetResourceVersion(), nil
}

// storedStream is pullgate's ImageStream ns/name; a missing one is a NotFound of
// resource (what the client asked for) named asked.
func (s *Server) storedStream(ctx context.Context, ns, name string, resource schema.GroupResource, asked string) (*imageapi.ImageStream, error) {
	u, err := s.Dynamic.Resource(imageapi.GVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(resource, asked)
	}
	if err != nil {
		return nil, err
	}
	var is imageapi.ImageStream
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is); err != nil {
		return nil, err
	}
	return &is, nil
}

func (s *Server) listImageStreams(w http.ResponseWriter, r *http.Request) {
	stored, rv, err := s.storedStreams(r.Context(), r.PathValue("ns"))
	if err != nil {
		writeStatus(w, err)
		return
	}
	out := struct {
		metav1.TypeMeta `json:",inline"`
		metav1.ListMeta `json:"metadata"`
		Items           []imageStream `json:"items"`
	}{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamList", APIVersion: "image.openshift.io/v1"}, ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: []imageStream{}}
	for i := range stored {
		out.Items = append(out.Items, s.toImageStream(&stored[i]))
	}
	if wantsTable(r) {
		table := imageStreamTable(out.Items, time.Now())
		table.ResourceVersion = rv
		writeJSON(w, http.StatusOK, table)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getImageStream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	is, err := s.storedStream(r.Context(), r.PathValue("ns"), name, imageStreamsResource, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if wantsTable(r) {
		writeJSON(w, http.StatusOK, imageStreamTable([]imageStream{s.toImageStream(is)}, time.Now()))
		return
	}
	writeJSON(w, http.StatusOK, s.toImageStream(is))
}
