package identities

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"

	"pullgate.dev/pullgate/internal/controller/leader"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/keys"
	"pullgate.dev/pullgate/internal/registry/location"
	"pullgate.dev/pullgate/internal/registry/roles"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// Identity is one of pullgate's components as the API server knows it, with the
// least it needs: cluster-wide rules in ClusterRole, and rules on objects in one
// namespace (pullgate-system, kube-public) in Roles. What RBAC cannot limit — the
// names and types of what it creates, a token's audience — is pinned by Admission().
type Identity struct {
	// Component is what runs as it: registry, token-service or controllers.
	Component string
	// User is its name inside `pullgate up` (a client certificate of up's CA).
	User string
	// ServiceAccount is its account in pullgate-system when installed from deploy/;
	// the registry and its token service share a pod, so they share one.
	ServiceAccount string
	ClusterRole    *rbacv1.ClusterRole
	Roles          []*rbacv1.Role
}

// Usernames are the names the API server sees for the identity: up's user and
// deploy/'s service account.
func (i Identity) Usernames() []string {
	return []string{i.User, serviceaccount.MakeUsername(keys.Namespace, i.ServiceAccount)}
}

// The ServiceAccounts of deploy/.
const (
	RegistryServiceAccount    = "pullgate-registry"
	ControllersServiceAccount = "pullgate-controllers"
)

var read = []string{"get", "list", "watch"}

// Registry is the integrated registry: it reads RBAC and namespaces to decide
// pulls and pushes, writes ImageStreams, and holds in pullgate-system only its keys
// Secret and the prunes' Lease, and in kube-public only the ConfigMap that publishes
// its names. It reads no other Secret and binds nothing.
func Registry() Identity {
	return Identity{
		Component: "registry", User: "pullgate:registry", ServiceAccount: RegistryServiceAccount,
		ClusterRole: clusterRole("pullgate:registry",
			rbacv1.PolicyRule{APIGroups: []string{imageapi.Group}, Resources: []string{imageapi.Resource}, Verbs: []string{"get", "list", "watch", "create"}},
			rbacv1.PolicyRule{APIGroups: []string{imageapi.Group}, Resources: []string{imageapi.Resource + "/status"}, Verbs: []string{"update"}},
			rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, ResourceNames: []string{imageapi.CRDName}, Verbs: []string{"get"}},
		),
		Roles: []*rbacv1.Role{
			role("pullgate:registry", keys.Namespace,
				// create cannot be limited by name in RBAC: Admission() pins it.
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{keys.Name}, Verbs: []string{"get", "list", "watch", "update"}},
				rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
				rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{leader.PruneLease}, Verbs: []string{"get", "update"}},
			),
			role("pullgate:registry", location.Namespace,
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{location.Name}, Verbs: []string{"get", "update"}},
			),
		},
	}
}

// TokenService is the registry's token service: it reviews the tokens clients
// log in with. (It decides with the registry's RBAC informers and signs with the
// registry's keys, in the same process.)
func TokenService() Identity {
	return Identity{
		Component: "token-service", User: "pullgate:token-service", ServiceAccount: RegistryServiceAccount,
		ClusterRole: clusterRole("pullgate:token-service",
			rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		),
	}
}

// Controllers are the reconcilers: they create the builder and deployer service
// accounts and the registry's role bindings in every namespace (bind limited to the
// registry's roles, as OpenShift's controllers bind only theirs), and keep every
// service account's <sa>-dockercfg pull secret with a token for the registry's
// audience. Reading secrets cluster-wide is what keeping a pull secret needs (as
// OpenShift's pull secret controller does); what they may write is pinned by
// Admission(). They patch the images of workloads that follow image stream tags, and
// nothing else of them (Admission() again). Their Lease is the only object they hold
// in pullgate-system.
func Controllers() Identity {
	return Identity{
		Component: "controllers", User: "pullgate:controllers", ServiceAccount: ControllersServiceAccount,
		ClusterRole: clusterRole("pullgate:controllers",
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
			rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"rolebindings"}, Verbs: []string{"get", "list", "watch", "create"}},
			rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"}, ResourceNames: boundRoles(), Verbs: []string{"bind"}},
			// Pull failures: the pods that fail to pull, RBAC to decide why (as the
			// registry does), and an Event on the pod that says so.
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"roles", "clusterroles", "clusterrolebindings"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			// Image triggers: the workloads that follow image stream tags, patched (only
			// their images: Admission() pins it) when a tag moves, and the streams.
			rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets"}, Verbs: []string{"get", "list", "watch", "patch"}},
			rbacv1.PolicyRule{APIGroups: []string{"batch"}, Resources: []string{"cronjobs"}, Verbs: []string{"get", "list", "watch", "patch"}},
			rbacv1.PolicyRule{APIGroups: []string{imageapi.Group}, Resources: []string{imageapi.Resource}, Verbs: read},
			// The API server's service account keys: a pull secret's token is renewed
			// when they change.
			rbacv1.PolicyRule{NonResourceURLs: []string{"/openid/v1/jwks"}, Verbs: []string{"get"}},
		),
		Roles: []*rbacv1.Role{
			role("pullgate:controllers", keys.Namespace,
				rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
				rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{leader.ControllersLease}, Verbs: []string{"get", "update"}},
			),
		},
	}
}

// Identities are pullgate's components, each with its own identity.
func Identities() []Identity { return []Identity{Registry(), TokenService(), Controllers()} }

// boundRoles are the cluster roles the controllers bind in every namespace.
func boundRoles() []string {
	var names []string
	for _, b := range roles.RoleBindings("") {
		names = append(names, b.RoleRef.Name)
	}
	return names
}

// NodeRole lets nodes request service account tokens for the registry's audience
// for the pods bound to them (NodeRestriction checks
// request-serviceaccounts-token-audience, KEP-4412) — the credential provider's
// credential for the integrated registry — and read an ImageStream by name, so that
// a node gives a pod a cached image of the registry only while the registry still
// serves it there.
const NodeRole = "pullgate:node"

// Node is the ClusterRole NodeRole, bound to the group system:nodes.
func Node() *rbacv1.ClusterRole {
	return clusterRole(NodeRole,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{tokenauth.Service}, Verbs: []string{"request-serviceaccounts-token-audience"}},
		rbacv1.PolicyRule{APIGroups: []string{imageapi.Group}, Resources: []string{imageapi.Resource}, Verbs: []string{"get"}},
	)
}

func clusterRole(name string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"}},
		Rules:      rules,
	}
}

func role(name, namespace string, rules ...rbacv1.PolicyRule) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Rules:      rules,
	}
}
