package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"pullgate.dev/pullgate/internal/rbacauthz"
)

// authz lets alice get namespace "mine", and says group g may pull anywhere.
type authz struct{}

func (authz) Decide(u rbacauthz.User, r rbacauthz.Request) rbacauthz.Decision {
	return rbacauthz.Decision{Allowed: u.Name == "alice" && r.Name == "mine"}
}

func (authz) WhoCan(r rbacauthz.Request) []rbacauthz.Grant {
	if r.Group != "image.pullgate.dev" || r.Subresource != "layers" {
		return nil
	}
	return []rbacauthz.Grant{{Subject: rbacv1.Subject{Kind: rbacv1.GroupKind, Name: "system:serviceaccounts:" + r.Namespace}},
		{Subject: rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "a", Name: "default"}}}
}

func server() (*Server, *fake.Clientset) {
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mine"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}})
	return &Server{Client: client, Authz: authz{}, ProxyClientName: "front-proxy-client"}, client
}

// request is what the aggregation layer sends: its client certificate, and the user.
func request(method, path, body, userName string, proxy bool) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if proxy {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: "front-proxy-client"}}
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	}
	r.Header.Set("X-Remote-User", userName)
	return r
}

func TestOnlyTheAggregatorSpeaksForUsers(t *testing.T) {
	s, _ := server()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("GET", "/apis/project.openshift.io/v1/projects", "", "system:admin", false))
	if w.Code != http.StatusUnauthorized {
		t.Errorf("no front-proxy certificate: %d", w.Code)
	}
}

func TestProjects(t *testing.T) {
	s, client := server()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("GET", "/apis/project.openshift.io/v1/projects", "", "alice", true))
	var list struct {
		Kind  string `json:"kind"`
		Items []struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || list.Kind != "ProjectList" || len(list.Items) != 1 || list.Items[0].Metadata.Name != "mine" {
		t.Fatalf("alice's projects: %s", w.Body.String())
	}
	w = httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("GET", "/apis/project.openshift.io/v1/projects/theirs", "", "alice", true))
	if w.Code != http.StatusForbidden {
		t.Errorf("another's project: %d", w.Code)
	}
	w = httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("POST", "/apis/project.openshift.io/v1/projectrequests", `{"metadata":{"name":"new-one"},"displayName":"New"}`, "bob", true))
	if w.Code != http.StatusCreated {
		t.Fatalf("project request: %d %s", w.Code, w.Body.String())
	}
	ns, err := client.CoreV1().Namespaces().Get(t.Context(), "new-one", metav1.GetOptions{})
	if err != nil || ns.Annotations["openshift.io/requester"] != "bob" || ns.Annotations["openshift.io/display-name"] != "New" {
		t.Fatalf("namespace: %v %+v", err, ns)
	}
	rb, err := client.RbacV1().RoleBindings("new-one").Get(t.Context(), "admin", metav1.GetOptions{})
	if err != nil || rb.RoleRef.Name != "admin" || rb.Subjects[0].Name != "bob" {
		t.Fatalf("admin binding: %v %+v", err, rb)
	}
	w = httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("POST", "/apis/project.openshift.io/v1/projectrequests", `{"metadata":{"name":"new-one"}}`, "bob", true))
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), `project.project.openshift.io \"new-one\" already exists`) {
		t.Errorf("the same project again: %d %s", w.Code, w.Body.String())
	}
}

// oc policy who-can get imagestreams/layers asks in OpenShift's group: the answer is
// pullgate's registry's, from image.pullgate.dev.
func TestAccessReview(t *testing.T) {
	s, _ := server()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("POST", "/apis/authorization.openshift.io/v1/namespaces/b/localresourceaccessreviews",
		`{"verb":"get","resourceAPIGroup":"","resource":"imagestreams/layers"}`, "alice", true))
	var resp struct {
		Kind      string   `json:"kind"`
		Namespace string   `json:"namespace"`
		Users     []string `json:"users"`
		Groups    []string `json:"groups"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Kind != "ResourceAccessReviewResponse" || resp.Namespace != "b" ||
		len(resp.Groups) != 1 || resp.Groups[0] != "system:serviceaccounts:b" || len(resp.Users) != 1 || resp.Users[0] != "system:serviceaccount:a:default" {
		t.Fatalf("review: %s", w.Body.String())
	}
}

// A comma is part of a group's name, as the API server reads the header: a user in
// the group "devs,system:masters" is not in system:masters.
func TestGroupHeaderIsReadAsTheAPIServerReadsIt(t *testing.T) {
	r := request("GET", "/apis/project.openshift.io/v1/projects", "", "mallory", true)
	r.Header.Add("X-Remote-Group", "devs,system:masters")
	r.Header.Add("X-Remote-Group", "system:authenticated")
	u := requester(r)
	if u.Name != "mallory" || len(u.Groups) != 2 || u.Groups[0] != "devs,system:masters" {
		t.Errorf("requester = %+v, want mallory in [devs,system:masters system:authenticated]", u)
	}
}

// alice may delete her own project (the fake authorizer allows what names "mine"),
// not another's; nothing of another's is deleted.
func TestDeleteProjectOnlyWhereAllowed(t *testing.T) {
	s, client := server()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("DELETE", "/apis/project.openshift.io/v1/projects/theirs", "", "alice", true))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "pullgate policy add-role-to-user admin alice -n theirs") {
		t.Errorf("deleting theirs: %d %s", w.Code, w.Body)
	}
	if _, err := client.CoreV1().Namespaces().Get(t.Context(), "theirs", metav1.GetOptions{}); err != nil {
		t.Errorf("theirs is gone: %v", err)
	}
	w = httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("DELETE", "/apis/project.openshift.io/v1/projects/mine", "", "alice", true))
	if w.Code != http.StatusOK {
		t.Errorf("deleting mine: %d %s", w.Code, w.Body)
	}
	if _, err := client.CoreV1().Namespaces().Get(t.Context(), "mine", metav1.GetOptions{}); err == nil {
		t.Error("mine is still there")
	}
}

// A review about oneself is answered for the asker; one about another user is
// refused to an asker without Kubernetes' right to ask about others.
func TestSubjectAccessReview(t *testing.T) {
	s, _ := server()
	for _, tc := range []struct {
		asker, body string
		code        int
		allowed     bool
	}{
		{"alice", `{"verb":"get","resource":"namespaces","resourceName":"mine"}`, http.StatusCreated, true},
		{"bob", `{"verb":"get","resource":"namespaces","resourceName":"mine"}`, http.StatusCreated, false},
		{"bob", `{"verb":"get","resource":"namespaces","resourceName":"mine","user":"alice"}`, http.StatusForbidden, false},
	} {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, request("POST", "/apis/authorization.openshift.io/v1/subjectaccessreviews", tc.body, tc.asker, true))
		var resp struct {
			Kind    string `json:"kind"`
			Allowed bool   `json:"allowed"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &resp)
		if w.Code != tc.code || (tc.code == http.StatusCreated && (resp.Kind != "SubjectAccessReviewResponse" || resp.Allowed != tc.allowed)) {
			t.Errorf("%s asks %s: %d %s", tc.asker, tc.body, w.Code, w.Body)
		}
	}
}
