package identities

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/component-helpers/auth/rbac/validation"
)

// Each identity may do what its component does, and no more: nobody of pullgate may
// escalate or bind a role other than the registry's three, write RBAC roles, read a
// secret outside what it keeps, or create pods.
func TestIdentitiesHoldTheLeast(t *testing.T) {
	rules := func(id Identity, namespace string) []rbacv1.PolicyRule {
		out := id.ClusterRole.Rules
		for _, r := range id.Roles {
			if r.Namespace == namespace {
				out = append(out, r.Rules...)
			}
		}
		return out
	}
	type want struct {
		id        Identity
		namespace string
		rule      rbacv1.PolicyRule
	}
	covers := func(w want) bool {
		ok, _ := validation.Covers(rules(w.id, w.namespace), []rbacv1.PolicyRule{w.rule})
		return ok
	}
	rule := func(verb, group, resource string, names ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{Verbs: []string{verb}, APIGroups: []string{group}, Resources: []string{resource}, ResourceNames: names}
	}
	for _, w := range []want{
		{TokenService(), "", rule("create", "authentication.k8s.io", "tokenreviews")},
		{Registry(), "", rule("update", "image.pullgate.dev", "imagestreams/status")},
		{Registry(), "pullgate-system", rule("update", "", "secrets", "pullgate-registry-keys")},
		{Registry(), "pullgate-system", rule("update", "coordination.k8s.io", "leases", "pullgate-registry-prune")},
		{Registry(), "kube-public", rule("update", "", "configmaps", "pullgate-registry")},
		{Controllers(), "", rule("create", "", "serviceaccounts/token")},
		{Controllers(), "", rule("bind", "rbac.authorization.k8s.io", "clusterroles", "system:image-puller")},
		{Controllers(), "pullgate-system", rule("update", "coordination.k8s.io", "leases", "pullgate-controllers")},
	} {
		if !covers(w) {
			t.Errorf("%s lacks %v in %q", w.id.Component, w.rule, w.namespace)
		}
	}
	for _, id := range Identities() {
		for _, ns := range []string{"", "pullgate-system", "kube-system"} {
			for _, not := range []rbacv1.PolicyRule{
				rule("escalate", "rbac.authorization.k8s.io", "clusterroles"),
				rule("bind", "rbac.authorization.k8s.io", "clusterroles", "cluster-admin"),
				rule("bind", "rbac.authorization.k8s.io", "clusterroles", "admin"),
				rule("update", "rbac.authorization.k8s.io", "clusterroles"),
				rule("create", "rbac.authorization.k8s.io", "roles"),
				rule("update", "rbac.authorization.k8s.io", "rolebindings"),
				rule("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
				rule("update", "", "configmaps"),
				rule("create", "", "pods"),
				rule("delete", "", "namespaces"),
				rule("create", "", "serviceaccounts/token", "pullgate-controllers"),
				rule("impersonate", "", "users"),
				rule("update", "coordination.k8s.io", "leases", "kube-controller-manager"),
				rule("create", "apiextensions.k8s.io", "customresourcedefinitions"),
			} {
				if id.Component == "controllers" && not.Resources[0] == "serviceaccounts/token" {
					continue
				}
				if covers(want{id, ns, not}) {
					t.Errorf("%s may %v in %q", id.Component, not, ns)
				}
			}
		}
		if id.Component != "controllers" {
			for _, not := range []rbacv1.PolicyRule{rule("get", "", "secrets"), rule("list", "", "secrets"), rule("create", "", "serviceaccounts/token")} {
				if covers(want{id, "kube-system", not}) {
					t.Errorf("%s may %v in kube-system", id.Component, not)
				}
			}
		}
	}
}

// The policy pins every identity's usernames, in up and from deploy/.
func TestAdmissionPolicyMatchesEveryIdentity(t *testing.T) {
	policy, binding := Admission()
	if binding.Spec.PolicyName != policy.Name {
		t.Fatalf("binding names policy %q, not %q", binding.Spec.PolicyName, policy.Name)
	}
	match := policy.Spec.MatchConditions[0].Expression
	for _, id := range Identities() {
		for _, u := range id.Usernames() {
			if !strings.Contains(match, `"`+u+`"`) {
				t.Errorf("the policy does not match %s", u)
			}
		}
	}
	if !strings.Contains(managedBindings(), `"system:serviceaccounts:" + request.namespace`) {
		t.Errorf("the image pullers' binding is not pinned to the request's namespace: %s", managedBindings())
	}
}
