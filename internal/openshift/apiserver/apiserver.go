// Package apiserver serves the few OpenShift APIs that `oc` reaches for every day,
// behind the Kubernetes API server's aggregation layer (APIServices backed by
// pullgate, as openshift-apiserver is), so that the real `oc` works unmodified:
//
//   - project.openshift.io/v1: projects (the namespaces the user may get; deleted
//     by those who may delete the project or its namespace) and
//     projectrequests (`oc new-project`: a namespace and an admin binding for the
//     requester);
//   - authorization.openshift.io/v1: localresourceaccessreviews and
//     resourceaccessreviews (`oc policy who-can`), and (local)subjectaccessreviews
//     (`oc login` asks whether the user may request projects), answered by the same
//     RBAC evaluator as `pullgate policy who-can`;
//   - image.openshift.io/v1: imagestreams (read-write, watched), imagestreamtags
//     (oc tag), imagestreamimports (oc import-image), imagestreamimages and images,
//     all stored in pullgate's ImageStreams (image.pullgate.dev, one source of truth
//     for the registry, its prune and the console) and printed with OpenShift's
//     columns. Spec tags are followed at once: another stream's image copied into
//     the stream's repository, an external one imported with the project's pull
//     secrets; scheduled imports are repeated (RunScheduledImports).
//
// The API server authenticates and authorizes every request (RBAC sees these
// resources like any other) and passes the user in headers that only its client
// certificate, signed by the front-proxy CA, may send.
package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/rbacauthz"
)

// Groups are the API groups served, each at v1.
var Groups = []string{"project.openshift.io", "authorization.openshift.io", "image.openshift.io"}

// Server answers the aggregated requests.
type Server struct {
	// Client acts with pullgate's own identity, after the API server has authorized
	// the user for the request.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Authz evaluates RBAC from informers (the token service's).
	Authz Authorizer
	// RegistryHost is the integrated registry's name, for image streams'
	// dockerImageRepository.
	RegistryHost string
	// Images copies, imports and describes images (oc tag, oc import-image, oc
	// describe istag).
	Images *images.Registry
	// ProxyClientName is the common name the front-proxy client certificate must have.
	ProxyClientName string
	Log             *slog.Logger
}

// Authorizer is RBAC's evaluator (rbacauthz.Authorizer).
type Authorizer interface {
	Decide(user rbacauthz.User, req rbacauthz.Request) rbacauthz.Decision
	WhoCan(req rbacauthz.Request) []rbacauthz.Grant
}

// TLSConfig serves with cert and requires the aggregation layer's client
// certificate, signed by the CA in frontProxyCA.
func TLSConfig(cert tls.Certificate, frontProxyCA string) (*tls.Config, error) {
	pem, err := os.ReadFile(frontProxyCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate in it", frontProxyCA)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

// Handler routes the APIs. Requests whose client certificate is not the
// aggregation layer's are refused: only the API server may speak for a user.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /apis", s.groupList)
	for _, g := range Groups {
		mux.HandleFunc("GET /apis/"+g, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, apiGroup(g)) })
		mux.HandleFunc("GET /apis/"+g+"/v1", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, resources(g)) })
	}
	mux.HandleFunc("GET /apis/project.openshift.io/v1/projects", s.listProjects)
	mux.HandleFunc("GET /apis/project.openshift.io/v1/projects/{name}", s.getProject)
	mux.HandleFunc("GET /apis/project.openshift.io/v1/projectrequests", s.mayRequestProject)
	mux.HandleFunc("POST /apis/project.openshift.io/v1/projectrequests", s.requestProject)
	mux.HandleFunc("POST /apis/authorization.openshift.io/v1/namespaces/{ns}/localresourceaccessreviews", s.accessReview)
	mux.HandleFunc("POST /apis/authorization.openshift.io/v1/resourceaccessreviews", s.accessReview)
	mux.HandleFunc("POST /apis/authorization.openshift.io/v1/subjectaccessreviews", s.subjectAccessReview)
	mux.HandleFunc("POST /apis/authorization.openshift.io/v1/namespaces/{ns}/localsubjectaccessreviews", s.subjectAccessReview)
	mux.HandleFunc("DELETE /apis/project.openshift.io/v1/projects/{name}", s.deleteProject)
	const image = "/apis/image.openshift.io/v1"
	mux.HandleFunc("GET "+image+"/imagestreams", s.listImageStreams)
	mux.HandleFunc("GET "+image+"/namespaces/{ns}/imagestreams", s.listImageStreams)
	mux.HandleFunc("POST "+image+"/namespaces/{ns}/imagestreams", s.createImageStream)
	mux.HandleFunc("GET "+image+"/namespaces/{ns}/imagestreams/{name}", s.getImageStream)
	mux.HandleFunc("PUT "+image+"/namespaces/{ns}/imagestreams/{name}", s.updateImageStream)
	mux.HandleFunc("PATCH "+image+"/namespaces/{ns}/imagestreams/{name}", s.patchImageStream)
	mux.HandleFunc("DELETE "+image+"/namespaces/{ns}/imagestreams/{name}", s.deleteImageStream)
	mux.HandleFunc("GET "+image+"/imagestreamtags", s.listImageStreamTags)
	mux.HandleFunc("GET "+image+"/namespaces/{ns}/imagestreamtags", s.listImageStreamTags)
	mux.HandleFunc("POST "+image+"/namespaces/{ns}/imagestreamtags", s.putImageStreamTag)
	mux.HandleFunc("GET "+image+"/namespaces/{ns}/imagestreamtags/{name}", s.getImageStreamTag)
	mux.HandleFunc("PUT "+image+"/namespaces/{ns}/imagestreamtags/{name}", s.putImageStreamTag)
	mux.HandleFunc("DELETE "+image+"/namespaces/{ns}/imagestreamtags/{name}", s.deleteImageStreamTag)
	mux.HandleFunc("POST "+image+"/namespaces/{ns}/imagestreamimports", s.createImageStreamImport)
	mux.HandleFunc("GET "+image+"/namespaces/{ns}/imagestreamimages/{name}", s.getImageStreamImage)
	mux.HandleFunc("GET "+image+"/images", s.listImages)
	mux.HandleFunc("GET "+image+"/images/{name}", s.getImage)
	mux.HandleFunc("DELETE "+image+"/images/{name}", s.refusePrune)
	mux.HandleFunc("PUT "+image+"/namespaces/{ns}/imagestreams/{name}/status", s.refusePrune)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && !s.fromAggregator(r) {
			writeStatus(w, apierrors.NewUnauthorized("only the Kubernetes API server's aggregation layer may call this server"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) fromAggregator(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return false
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName == s.ProxyClientName
}

// requestHeaders reads the user the API server passes exactly as the API server's
// own requestheader authenticator does (one group per header value: a comma is part
// of a group's name), with the header names pullgate up's API server sends.
var requestHeaders = func() authenticator.Request {
	a, err := headerrequest.New([]string{"X-Remote-User"}, []string{"X-Remote-Uid"}, []string{"X-Remote-Group"}, []string{"X-Remote-Extra-"})
	if err != nil {
		panic(err)
	}
	return a
}()

// requester is the user the API server authenticated; no user is the empty User,
// whom RBAC allows nothing.
func requester(r *http.Request) rbacauthz.User {
	resp, ok, err := requestHeaders.AuthenticateRequest(r)
	if err != nil || !ok {
		return rbacauthz.User{}
	}
	return rbacauthz.User{Name: resp.User.GetName(), Groups: resp.User.GetGroups()}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, err error) {
	status, ok := err.(apierrors.APIStatus)
	if !ok {
		status = apierrors.NewInternalError(err)
	}
	st := status.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	writeJSON(w, int(st.Code), st)
}

func (s *Server) groupList(w http.ResponseWriter, _ *http.Request) {
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, g := range Groups {
		list.Groups = append(list.Groups, apiGroup(g))
	}
	writeJSON(w, http.StatusOK, list)
}

func apiGroup(g string) metav1.APIGroup {
	v := metav1.GroupVersionForDiscovery{GroupVersion: g + "/v1", Version: "v1"}
	return metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: g, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v}
}

// resources is the discovery document of a group's v1: what kubectl api-resources
// and oc's clients see.
func resources(g string) metav1.APIResourceList {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: g + "/v1"}
	switch g {
	case "project.openshift.io":
		list.APIResources = []metav1.APIResource{
			{Name: "projects", SingularName: "project", Kind: "Project", Verbs: []string{"delete", "get", "list"}},
			{Name: "projectrequests", SingularName: "projectrequest", Kind: "ProjectRequest", Verbs: []string{"create", "list"}},
		}
	case "authorization.openshift.io":
		list.APIResources = []metav1.APIResource{
			{Name: "localresourceaccessreviews", SingularName: "localresourceaccessreview", Namespaced: true, Kind: "LocalResourceAccessReview", Verbs: []string{"create"}},
			{Name: "resourceaccessreviews", SingularName: "resourceaccessreview", Kind: "ResourceAccessReview", Verbs: []string{"create"}},
			{Name: "localsubjectaccessreviews", SingularName: "localsubjectaccessreview", Namespaced: true, Kind: "LocalSubjectAccessReview", Verbs: []string{"create"}},
			{Name: "subjectaccessreviews", SingularName: "subjectaccessreview", Kind: "SubjectAccessReview", Verbs: []string{"create"}},
		}
	case "image.openshift.io":
		list.APIResources = []metav1.APIResource{
			{Name: "imagestreams", SingularName: "imagestream", Namespaced: true, Kind: "ImageStream", ShortNames: []string{"is"}, Verbs: []string{"create", "delete", "get", "list", "patch", "update", "watch"}},
			{Name: "imagestreamtags", SingularName: "imagestreamtag", Namespaced: true, Kind: "ImageStreamTag", ShortNames: []string{"istag"}, Verbs: []string{"create", "delete", "get", "list", "update"}},
			{Name: "imagestreamimports", SingularName: "imagestreamimport", Namespaced: true, Kind: "ImageStreamImport", Verbs: []string{"create"}},
			{Name: "imagestreamimages", SingularName: "imagestreamimage", Namespaced: true, Kind: "ImageStreamImage", ShortNames: []string{"isimage"}, Verbs: []string{"get"}},
			{Name: "images", SingularName: "image", Kind: "Image", Verbs: []string{"get", "list"}},
		}
	}
	return list
}

// GroupVersions are the served group versions, for their APIServices.
func GroupVersions() []schema.GroupVersion {
	var out []schema.GroupVersion
	for _, g := range Groups {
		out = append(out, schema.GroupVersion{Group: g, Version: "v1"})
	}
	return out
}
