package console

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/docker/go-units"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"pullgate.dev/pullgate/internal/explain"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/pkg/credentials"
)

var funcs = template.FuncMap{
	"short": func(d string) string {
		if len(d) > 19 {
			return d[:19]
		}
		return d
	},
	"ago": func(t metav1.Time) string { return time.Since(t.Time).Round(time.Second).String() + " ago" },
	"size": func(n int64) string {
		if n <= 0 {
			return "—"
		}
		return units.BytesSize(float64(n))
	},
}

// page is what every template gets.
type page struct {
	Title   string
	CSRF    string
	Flash   string
	Error   string
	Crumbs  []crumb
	Content any
}

type crumb struct{ Name, Href string }

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	p.CSRF = s.csrfToken()
	p.Flash, p.Error = r.URL.Query().Get("done"), r.URL.Query().Get("error")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pages.ExecuteTemplate(w, name, p); err != nil {
		s.Log.Error("console page", "page", name, "err", err)
	}
}

// fail shows an API error on a page of its own: what happened and to whom.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	w.WriteHeader(http.StatusBadGateway)
	s.render(w, r, "error.html", page{Title: "Error", Error: what + ": " + err.Error()})
}

// projectRow is one project on the projects page.
type projectRow struct {
	Name                                string
	ImageStreams, Pods, ServiceAccounts int
	Stuck                               int
}

func (s *Server) projects(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	nss, err := s.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		s.fail(w, r, "listing your projects", err)
		return
	}
	rows := map[string]*projectRow{}
	var names []string
	for _, ns := range nss.Items {
		rows[ns.Name] = &projectRow{Name: ns.Name}
		names = append(names, ns.Name)
	}
	// One list of each kind for every project (what the user may list everywhere).
	if list, err := s.dynamic.Resource(imageapi.GVR).List(ctx, metav1.ListOptions{}); err == nil {
		for _, is := range list.Items {
			if row := rows[is.GetNamespace()]; row != nil {
				row.ImageStreams++
			}
		}
	}
	if pods, err := s.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			if row := rows[p.Namespace]; row != nil {
				row.Pods++
				if pullState(&p).Stuck {
					row.Stuck++
				}
			}
		}
	}
	if sas, err := s.client.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, sa := range sas.Items {
			if row := rows[sa.Namespace]; row != nil {
				row.ServiceAccounts++
			}
		}
	}
	sort.Strings(names)
	var out []*projectRow
	for _, n := range names {
		out = append(out, rows[n])
	}
	s.render(w, r, "projects.html", page{Title: "Projects", Content: out})
}

// podRow is a pod and its pull state.
type podRow struct {
	Name, ServiceAccount, Node string
	State                      podPull
}

// podPull is a pod's pull state as the kubelet reports it.
type podPull struct {
	Condition string // ImagesPulled: True, False, or ""
	Reason    string // ErrImagePull, ImagePullBackOff, PullOnlyNode, …
	Message   string
	Stuck     bool
}

func pullState(p *corev1.Pod) podPull {
	var st podPull
	for _, c := range p.Status.Conditions {
		if c.Type == "ImagesPulled" {
			st.Condition = string(c.Status)
		}
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range list {
			if w := cs.State.Waiting; w != nil {
				if st.Reason == "" || w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" {
					st.Reason, st.Message = w.Reason, w.Message
				}
			}
		}
	}
	st.Stuck = st.Reason == "ErrImagePull" || st.Reason == "ImagePullBackOff" || st.Reason == "InvalidImageName"
	return st
}

// streamRow is an image stream with its tags.
type streamRow struct {
	Name string
	Tags []tagRow
}

type tagRow struct {
	Tag, Digest, MediaType, ArtifactType, Pull string
	Created                                    metav1.Time
	Size                                       int64
	// Referrers are the manifests whose subject is this tag's (signatures, SBOMs).
	Referrers []imageapi.Referrer
	// Source is what the tag's spec follows (oc tag, oc import-image), e.g.
	// "DockerImage quay.io/org/tool:1.2"; empty for a pushed tag.
	Source    string
	Scheduled bool
	// Error is why the tag could not follow its source (its failed import).
	Error string
}

type saRow struct {
	Name    string
	Secrets []secretRef
}

type secretRef struct {
	Name    string
	Hosts   []string
	Missing bool
	Problem string
}

type projectPage struct {
	Name            string
	Streams         []streamRow
	Pods            []podRow
	ServiceAccounts []saRow
	WhoCanPull      []grantRow
	Secrets         []string // pull secrets of the project, for the link form
}

type grantRow struct {
	Subject, Kind, Binding, Role string
	Revocable                    bool
	RevokeAs, RevokeKind         string
}

func (s *Server) project(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ns := r.PathValue("ns")
	if _, err := s.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		s.fail(w, r, "project "+ns, err)
		return
	}
	p := projectPage{Name: ns}
	p.Streams, _ = s.streams(ctx, ns)
	if pods, err := s.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for i := range pods.Items {
			pod := &pods.Items[i]
			p.Pods = append(p.Pods, podRow{Name: pod.Name, ServiceAccount: pod.Spec.ServiceAccountName, Node: pod.Spec.NodeName, State: pullState(pod)})
		}
	}
	p.ServiceAccounts, p.Secrets = s.serviceAccounts(ctx, ns)
	p.WhoCanPull = s.whoCanPull(ctx, ns)
	s.render(w, r, "project.html", page{Title: "Project " + ns, Crumbs: []crumb{{"Projects", "/projects"}}, Content: p})
}

func (s *Server) streams(ctx context.Context, ns string) ([]streamRow, error) {
	list, err := s.dynamic.Resource(imageapi.GVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []streamRow
	for i := range list.Items {
		is, err := toStream(&list.Items[i])
		if err != nil {
			continue
		}
		out = append(out, s.streamRow(ns, is))
	}
	return out, nil
}

func toStream(u *unstructured.Unstructured) (*imageapi.ImageStream, error) {
	var is imageapi.ImageStream
	return &is, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is)
}

func (s *Server) streamRow(ns string, is *imageapi.ImageStream) streamRow {
	row := streamRow{Name: is.Name}
	// What the registry serves this stream as, never a tenant's annotation alone.
	repo := imageapi.RepositoryOf(ns, is.Name, is.Annotations)
	for _, t := range is.Status.Tags {
		tag := tagRow{Tag: t.Tag}
		if spec, ok := is.Spec.SpecTag(t.Tag); ok && spec.From != nil {
			tag.Source, tag.Scheduled = specSource(spec.From), spec.ImportPolicy.Scheduled
		}
		for _, c := range t.Conditions {
			if c.Status == corev1.ConditionFalse {
				tag.Error = c.Message
			}
		}
		if len(t.Items) == 0 {
			row.Tags = append(row.Tags, tag)
			continue
		}
		ev := t.Items[0]
		tag.Digest, tag.MediaType, tag.ArtifactType, tag.Created, tag.Size = ev.Digest, ev.MediaType, ev.ArtifactType, ev.Created, ev.Size
		tag.Pull = fmt.Sprintf("podman pull %s/%s:%s", s.RegistryHost, repo, t.Tag)
		if ev.External() {
			tag.Pull = "podman pull " + ev.DockerImageReference
		}
		for _, ref := range is.Status.Referrers {
			if ref.Subject == ev.Digest {
				tag.Referrers = append(tag.Referrers, ref)
			}
		}
		row.Tags = append(row.Tags, tag)
	}
	return row
}

// specSource says what a spec tag follows, in OpenShift's words.
func specSource(from *corev1.ObjectReference) string {
	if from.Namespace != "" {
		return from.Kind + " " + from.Namespace + "/" + from.Name
	}
	return from.Kind + " " + from.Name
}

// serviceAccounts are the project's accounts with their pull secrets (hosts, never
// values), and the project's pull secrets.
func (s *Server) serviceAccounts(ctx context.Context, ns string) ([]saRow, []string) {
	secrets := map[string]*corev1.Secret{}
	var pullSecrets []string
	if list, err := s.client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for i := range list.Items {
			sec := &list.Items[i]
			secrets[sec.Name] = sec
			if _, err := credentials.FromSecret(sec); err == nil {
				pullSecrets = append(pullSecrets, sec.Name)
			}
		}
	}
	var out []saRow
	sas, err := s.client.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, pullSecrets
	}
	for _, sa := range sas.Items {
		row := saRow{Name: sa.Name}
		for _, ref := range sa.ImagePullSecrets {
			row.Secrets = append(row.Secrets, describeSecret(ref.Name, secrets[ref.Name]))
		}
		out = append(out, row)
	}
	return out, pullSecrets
}

func describeSecret(name string, sec *corev1.Secret) secretRef {
	ref := secretRef{Name: name}
	if sec == nil {
		ref.Missing = true
		return ref
	}
	cfg, err := credentials.FromSecret(sec)
	if err != nil {
		ref.Problem = err.Error()
		return ref
	}
	for _, e := range cfg.Entries {
		if k, err := credentials.NormalizeKey(e.Key); err == nil && !slices.Contains(ref.Hosts, k) {
			ref.Hosts = append(ref.Hosts, k)
		}
	}
	return ref
}

// whoCanPull is every subject RBAC lets pull from ns, with the binding and role.
func (s *Server) whoCanPull(ctx context.Context, ns string) []grantRow {
	rbac := s.client.RbacV1()
	var b rbacauthz.Bindings
	if crbs, err := rbac.ClusterRoleBindings().List(ctx, metav1.ListOptions{}); err == nil {
		for i := range crbs.Items {
			b.ClusterRoleBindings = append(b.ClusterRoleBindings, &crbs.Items[i])
		}
	}
	if rbs, err := rbac.RoleBindings(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for i := range rbs.Items {
			b.RoleBindings = append(b.RoleBindings, &rbs.Items[i])
		}
	}
	b.RulesOf = s.rulesOf(ctx)
	var out []grantRow
	for _, g := range rbacauthz.WhoCan(tokenauth.RequestFor("pull", ns, ""), b) {
		row := grantRow{Subject: g.UserName(), Kind: g.Subject.Kind, Role: g.Role.Name, Binding: "clusterrolebinding " + g.BindingName}
		if g.BindingNamespace != "" {
			row.Binding = "rolebinding " + g.BindingNamespace + "/" + g.BindingName
			// What the grant form made can be revoked with the same code as the CLI.
			row.Revocable = g.Role.Name == "system:image-puller" && (g.Subject.Kind == "ServiceAccount" || g.Subject.Kind == "Group")
			row.RevokeAs, row.RevokeKind = g.UserName(), "user"
			if g.Subject.Kind == "Group" {
				row.RevokeKind = "group"
			}
		}
		out = append(out, row)
	}
	// This project's own grants first: they are what its users change.
	sort.SliceStable(out, func(i, j int) bool {
		return strings.HasPrefix(out[i].Binding, "rolebinding ") && !strings.HasPrefix(out[j].Binding, "rolebinding ")
	})
	return out
}

func (s *Server) rulesOf(ctx context.Context) func(ref rbacv1.RoleRef, namespace string) []rbacv1.PolicyRule {
	roles := map[string][]rbacv1.PolicyRule{}
	if crs, err := s.client.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{}); err == nil {
		for _, cr := range crs.Items {
			roles["ClusterRole/"+cr.Name] = cr.Rules
		}
	}
	return func(ref rbacv1.RoleRef, namespace string) []rbacv1.PolicyRule {
		if ref.Kind == "ClusterRole" {
			return roles["ClusterRole/"+ref.Name]
		}
		r, err := s.client.RbacV1().Roles(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return r.Rules
	}
}

type imageStreamPage struct {
	Project string
	Stream  streamRow
}

func (s *Server) imageStream(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	u, err := s.dynamic.Resource(imageapi.GVR).Namespace(ns).Get(r.Context(), name, metav1.GetOptions{})
	if err != nil {
		s.fail(w, r, "image stream "+ns+"/"+name, err)
		return
	}
	is, err := toStream(u)
	if err != nil {
		s.fail(w, r, "image stream "+ns+"/"+name, err)
		return
	}
	s.render(w, r, "imagestream.html", page{Title: "Image stream " + ns + "/" + name,
		Crumbs: []crumb{{"Projects", "/projects"}, {ns, "/projects/" + ns}}, Content: imageStreamPage{Project: ns, Stream: s.streamRow(ns, is)}})
}

type podPage struct {
	Project string
	Pod     podRow
	Explain string
	Verdict []explain.ImageReport
}

// pod shows a pod's pull state and, for a stuck one, the explain pull diagnosis.
func (s *Server) pod(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ns, name := r.PathValue("ns"), r.PathValue("name")
	pod, err := s.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		s.fail(w, r, "pod "+ns+"/"+name, err)
		return
	}
	p := podPage{Project: ns, Pod: podRow{Name: pod.Name, ServiceAccount: pod.Spec.ServiceAccountName, Node: pod.Spec.NodeName, State: pullState(pod)}}
	e := &explain.Explainer{Client: s.client, RegistryHosts: s.RegistryHosts, CredentialProvider: true}
	if authz := s.authorizer(); authz != nil {
		e.Authz = authz
	}
	if report, err := e.Pod(ctx, ns, name); err == nil {
		var b strings.Builder
		_ = report.Write(&b)
		p.Explain, p.Verdict = b.String(), report.Images
	}
	s.render(w, r, "pod.html", page{Title: "Pod " + ns + "/" + name, Crumbs: []crumb{{"Projects", "/projects"}, {ns, "/projects/" + ns}}, Content: p})
}

type serviceAccountPage struct {
	Project string
	Account saRow
	Secrets []string
}

func (s *Server) serviceAccount(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ns, name := r.PathValue("ns"), r.PathValue("name")
	rows, secrets := s.serviceAccounts(ctx, ns)
	for _, row := range rows {
		if row.Name == name {
			s.render(w, r, "serviceaccount.html", page{Title: "Service account " + ns + "/" + name,
				Crumbs: []crumb{{"Projects", "/projects"}, {ns, "/projects/" + ns}}, Content: serviceAccountPage{Project: ns, Account: row, Secrets: secrets}})
			return
		}
	}
	s.fail(w, r, "service account "+ns+"/"+name, fmt.Errorf("not found, or you may not read it"))
}
