package console

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"pullgate.dev/pullgate/internal/openshift/project"
	"pullgate.dev/pullgate/pkg/credentials"
)

// done sends the browser back to where it came from with the action's message: a
// POST answered with a redirect, so a reload repeats nothing.
func done(w http.ResponseWriter, r *http.Request, back, message string, err error) {
	q := url.Values{}
	if err != nil {
		q.Set("error", err.Error())
	} else {
		q.Set("done", strings.TrimSpace(message))
	}
	http.Redirect(w, r, back+"?"+q.Encode(), http.StatusSeeOther)
}

// grant is `pullgate policy add-role-to-user|group system:image-puller NAME -n NS`.
func (s *Server) grant(w http.ResponseWriter, r *http.Request) { s.roleChange(w, r, true) }

// revoke is `pullgate policy remove-role-from-user|group system:image-puller NAME -n NS`.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) { s.roleChange(w, r, false) }

func (s *Server) roleChange(w http.ResponseWriter, r *http.Request, add bool) {
	ns := r.PathValue("ns")
	back := "/projects/" + ns
	name := strings.TrimSpace(r.FormValue("subject"))
	group := r.FormValue("kind") == "group"
	if name == "" {
		done(w, r, back, "", fmt.Errorf("grant: give a user, a service account (system:serviceaccount:NS:NAME) or a group (system:serviceaccounts:NS)"))
		return
	}
	change := project.RoleChange{Namespace: ns, Role: "system:image-puller", Subjects: []rbacv1.Subject{project.Subject(name, group)}}
	operation, act := "added", project.Grant
	if !add {
		operation, act = "removed", project.Revoke
	}
	res, err := act(r.Context(), s.client, change)
	if errors.Is(err, project.ErrNotBound) {
		err = fmt.Errorf("unable to find target [%s]", name)
	}
	// oc's words: clusterrole.rbac.authorization.k8s.io/ROLE added: "NAME".
	msg := fmt.Sprintf("clusterrole.rbac.authorization.k8s.io/%s %s: %q", change.Role, operation, name)
	for _, warning := range res.Warnings {
		msg += "\nWarning: " + warning
	}
	done(w, r, back, msg, err)
}

// createSecret is `pullgate create secret generic NAME --from-file=.dockerconfigjson=FILE
// --type=kubernetes.io/dockerconfigjson`, for an uploaded config.json or auth.json,
// checked first as the CLI checks it.
func (s *Server) createSecret(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	back := "/projects/" + ns
	name := strings.TrimSpace(r.FormValue("name"))
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		done(w, r, back, "", fmt.Errorf("secret name %q: %s", name, strings.Join(errs, "; ")))
		return
	}
	file, header, err := r.FormFile("config")
	if err != nil {
		done(w, r, back, "", fmt.Errorf("secret %s: choose a config.json or auth.json to upload", name))
		return
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, 1<<20))
	if err != nil {
		done(w, r, back, "", err)
		return
	}
	if err := credentials.ValidateCredentialFile(data, credentials.Source{Kind: "uploaded file", Name: header.Filename}); err != nil {
		done(w, r, back, "", fmt.Errorf("secret %s not created: %w", name, err))
		return
	}
	_, err = s.client.CoreV1().Secrets(ns).Create(r.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}, metav1.CreateOptions{})
	done(w, r, back, "secret/"+name+" created", err)
}

// link is `pullgate secrets link SA SECRET --for=pull`.
func (s *Server) link(w http.ResponseWriter, r *http.Request) { s.linkChange(w, r, true) }

// unlink is `pullgate secrets unlink SA SECRET`.
func (s *Server) unlink(w http.ResponseWriter, r *http.Request) { s.linkChange(w, r, false) }

func (s *Server) linkChange(w http.ResponseWriter, r *http.Request, link bool) {
	ns, sa := r.PathValue("ns"), r.PathValue("name")
	back := "/projects/" + ns + "/serviceaccounts/" + sa
	secret := r.FormValue("secret")
	change := project.LinkChange{Namespace: ns, ServiceAccount: sa, Secrets: []string{secret}, ForPull: true}
	msg, act := fmt.Sprintf("secret %s linked to service account %s for pull", secret, sa), project.Link
	if !link {
		msg, act = fmt.Sprintf("secret %s unlinked from service account %s", secret, sa), project.Unlink
	}
	_, err := act(r.Context(), s.client, change)
	done(w, r, back, msg, err)
}
