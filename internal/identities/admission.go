package identities

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/controller"
	"pullgate.dev/pullgate/internal/controller/imagetrigger"
	"pullgate.dev/pullgate/internal/controller/leader"
	"pullgate.dev/pullgate/internal/registry/keys"
	"pullgate.dev/pullgate/internal/registry/location"
	"pullgate.dev/pullgate/internal/registry/roles"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// AdmissionPolicy names the ValidatingAdmissionPolicy (and its binding) that pins
// what pullgate's identities write where RBAC cannot: the names a create takes, the
// type of a secret, a token's audience, the subjects of a role binding.
const AdmissionPolicy = "pullgate-identities"

// Admission is the policy AdmissionPolicy. Every request of a pullgate identity to
// write a secret, a configmap, a lease, a role binding or a service account token
// must be one its component makes:
//   - controllers: secrets of type kubernetes.io/dockercfg named <sa>-dockercfg and
//     labelled as theirs (created, updated and deleted only so); tokens only for the
//     registry's audience; role bindings only the registry's three, exactly as
//     roles.RoleBindings makes them; their own Lease; of Deployments, StatefulSets,
//     DaemonSets and CronJobs carrying image.openshift.io/triggers, only the
//     containers' images, and only to a digest;
//   - registry: its keys Secret, the ConfigMap publishing its names, the prunes' Lease.
func Admission() (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	all := append(append(Registry().Usernames(), TokenService().Usernames()...), Controllers().Usernames()...)
	fail, equivalent := admissionv1.Fail, admissionv1.Equivalent
	policy := &admissionv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: AdmissionPolicy},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			// The API server's defaults spelled out: matchConstraints is one atomic
			// field, so deploy/ applied where up installed it must be equal to the byte.
			MatchConstraints: &admissionv1.MatchResources{MatchPolicy: &equivalent, NamespaceSelector: &metav1.LabelSelector{}, ObjectSelector: &metav1.LabelSelector{}, ResourceRules: []admissionv1.NamedRuleWithOperations{
				rules([]string{""}, []string{"secrets", "configmaps"}, admissionv1.Create, admissionv1.Update, admissionv1.Delete),
				rules([]string{""}, []string{"serviceaccounts/token"}, admissionv1.Create),
				rules([]string{rbacv1.GroupName}, []string{"rolebindings"}, admissionv1.Create, admissionv1.Update),
				rules([]string{"coordination.k8s.io"}, []string{"leases"}, admissionv1.Create),
				rules([]string{"apps"}, []string{"deployments", "statefulsets", "daemonsets"}, admissionv1.Update),
				rules([]string{"batch"}, []string{"cronjobs"}, admissionv1.Update),
			}},
			MatchConditions: []admissionv1.MatchCondition{{Name: "pullgate-identity", Expression: "request.userInfo.username in " + celList(all)}},
			Variables: []admissionv1.Variable{
				{Name: "controllers", Expression: "request.userInfo.username in " + celList(Controllers().Usernames())},
				{Name: "registry", Expression: "request.userInfo.username in " + celList(Registry().Usernames())},
				{Name: "resource", Expression: "request.resource.resource + (has(request.subResource) && request.subResource != '' ? '/' + request.subResource : '')"},
				{Name: "written", Expression: "request.operation == 'DELETE' ? oldObject : object"},
				{Name: "newPod", Expression: "request.resource.resource == 'cronjobs' ? object.spec.jobTemplate.spec.template.spec : object.spec.template.spec"},
				{Name: "oldPod", Expression: "request.resource.resource == 'cronjobs' ? oldObject.spec.jobTemplate.spec.template.spec : oldObject.spec.template.spec"},
			},
			Validations: forbidden([]admissionv1.Validation{
				{
					Expression: "variables.resource != 'secrets' || (variables.controllers && " + pullSecret("variables.written") +
						" && (request.operation != 'UPDATE' || " + pullSecret("oldObject") + ")) || " +
						fmt.Sprintf("(variables.registry && request.operation != 'DELETE' && request.namespace == %q && variables.written.metadata.name == %q)", keys.Namespace, keys.Name),
					Message: fmt.Sprintf("pullgate writes only the secrets it owns: as its controllers, type kubernetes.io/dockercfg named <serviceaccount>-dockercfg and labelled %s; as its registry, its keys %s/%s",
						controller.LabelPullSecret, keys.Namespace, keys.Name),
				},
				{
					Expression: fmt.Sprintf("variables.resource != 'configmaps' || (variables.registry && request.operation != 'DELETE' && request.namespace == %q && variables.written.metadata.name == %q)", location.Namespace, location.Name),
					Message:    fmt.Sprintf("of configmaps pullgate writes only %s/%s, as the registry", location.Namespace, location.Name),
				},
				{
					Expression: fmt.Sprintf("variables.resource != 'serviceaccounts/token' || (variables.controllers && object.spec.audiences == [%q])", tokenauth.Service),
					Message:    fmt.Sprintf("pullgate requests service account tokens only as its controllers, and only for the registry's audience %s", tokenauth.Service),
				},
				{
					Expression: "variables.resource != 'rolebindings' || (variables.controllers && request.operation == 'CREATE' && (" + managedBindings() + "))",
					Message:    "pullgate creates only the registry's role bindings (" + strings.Join(bindingNames(), ", ") + "), as its controllers, with their roles and subjects",
				},
				{
					Expression: "!(variables.resource in ['deployments', 'statefulsets', 'daemonsets', 'cronjobs']) || (variables.controllers && " + triggeredImagesOnly() + ")",
					Message: "pullgate's controllers change only the container images of workloads carrying " + imagetrigger.Annotation +
						", to images by digest: the pods' service account, volumes, security contexts, host namespaces, and every container's command, arguments, environment and mounts stay as they were",
				},
				{
					Expression: fmt.Sprintf("variables.resource != 'leases' || (request.namespace == %q && ((variables.controllers && object.metadata.name == %q) || (variables.registry && object.metadata.name == %q)))",
						keys.Namespace, leader.ControllersLease, leader.PruneLease),
					Message: fmt.Sprintf("pullgate creates only its own Leases in %s: %s (controllers) and %s (registry)", keys.Namespace, leader.ControllersLease, leader.PruneLease),
				},
			}),
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: AdmissionPolicy},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        AdmissionPolicy,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	}
	return policy, binding
}

// triggeredImagesOnly is true of a workload update that the image trigger
// controller makes: on a workload with triggers, only containers' images change, and
// only to a digest.
func triggeredImagesOnly() string {
	conds := []string{
		fmt.Sprintf("has(oldObject.metadata.annotations) && %q in oldObject.metadata.annotations", imagetrigger.Annotation),
		"object.metadata.?annotations == oldObject.metadata.?annotations",
		"object.metadata.?labels == oldObject.metadata.?labels",
	}
	for _, f := range []string{"serviceAccountName", "serviceAccount", "automountServiceAccountToken", "volumes", "securityContext", "hostNetwork", "hostPID", "hostIPC", "nodeName", "nodeSelector", "imagePullSecrets"} {
		conds = append(conds, fmt.Sprintf("variables.newPod.?%[1]s == variables.oldPod.?%[1]s", f))
	}
	same := []string{"o.name == c.name", "(o.image == c.image || c.image.contains('@sha256:'))"}
	for _, f := range []string{"command", "args", "env", "envFrom", "volumeMounts", "volumeDevices", "securityContext", "workingDir"} {
		same = append(same, fmt.Sprintf("o.?%[1]s == c.?%[1]s", f))
	}
	for _, list := range []string{"containers", "initContainers"} {
		newList := fmt.Sprintf("variables.newPod.?%s.orValue([])", list)
		oldList := fmt.Sprintf("variables.oldPod.?%s.orValue([])", list)
		conds = append(conds, fmt.Sprintf("size(%[1]s) == size(%[2]s) && %[1]s.all(c, %[2]s.exists(o, %[3]s))", newList, oldList, strings.Join(same, " && ")))
	}
	return "(" + strings.Join(conds, " && ") + ")"
}

// forbidden makes each validation's denial a 403 Forbidden, as RBAC's is.
func forbidden(vs []admissionv1.Validation) []admissionv1.Validation {
	reason := metav1.StatusReasonForbidden
	for i := range vs {
		vs[i].Reason = &reason
	}
	return vs
}

var allScopes = admissionv1.AllScopes

func rules(groups, resources []string, ops ...admissionv1.OperationType) admissionv1.NamedRuleWithOperations {
	return admissionv1.NamedRuleWithOperations{RuleWithOperations: admissionv1.RuleWithOperations{
		Operations: ops,
		Rule:       admissionv1.Rule{APIGroups: groups, APIVersions: []string{"*"}, Resources: resources, Scope: &allScopes},
	}}
}

// pullSecret is true of obj when it is a pull secret the controllers own.
func pullSecret(obj string) string {
	return fmt.Sprintf("(%[1]s.type == 'kubernetes.io/dockercfg' && %[1]s.metadata.name.matches('-dockercfg(-[0-9a-f]{10})?$') && has(%[1]s.metadata.labels) && %[2]q in %[1]s.metadata.labels && %[1]s.metadata.labels[%[2]q] == 'true')",
		obj, controller.LabelPullSecret)
}

// managedBindings is true of a role binding roles.RoleBindings makes in the
// request's namespace, and of no other.
func managedBindings() string {
	var alts []string
	for _, b := range roles.RoleBindings("NAMESPACE") {
		conds := []string{
			fmt.Sprintf("object.metadata.name == %q", b.Name),
			fmt.Sprintf("object.roleRef.apiGroup == %q && object.roleRef.kind == %q && object.roleRef.name == %q", b.RoleRef.APIGroup, b.RoleRef.Kind, b.RoleRef.Name),
			fmt.Sprintf("has(object.subjects) && size(object.subjects) == %d", len(b.Subjects)),
		}
		for i, s := range b.Subjects {
			subject := fmt.Sprintf("object.subjects[%d]", i)
			conds = append(conds, fmt.Sprintf("%s.kind == %q && %s.name == %s", subject, s.Kind, subject, inNamespace(s.Name)))
			if s.Kind == rbacv1.ServiceAccountKind {
				conds = append(conds, subject+".namespace == request.namespace")
			}
		}
		alts = append(alts, "("+strings.Join(conds, " && ")+")")
	}
	return strings.Join(alts, " || ")
}

// inNamespace is name as a CEL expression in which NAMESPACE is the request's.
func inNamespace(name string) string {
	before, after, found := strings.Cut(name, "NAMESPACE")
	if !found {
		return fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("%q + request.namespace + %q", before, after)
}

func bindingNames() []string {
	var names []string
	for _, b := range roles.RoleBindings("") {
		names = append(names, b.Name)
	}
	return names
}

func celList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}
