package identities

import (
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FlowSchemaName is the FlowSchema that gives pullgate's controllers the API server's
// priority level of the Kubernetes controller manager.
const FlowSchemaName = "pullgate-controllers"

// FlowSchema puts the controllers' requests (up's user and deploy/'s service
// account) in priority level workload-high, as Kubernetes' own controller manager's
// (FlowSchema kube-controller-manager, same precedence), instead of global-default,
// where every authenticated client shares a few seats: measured in a burst of 400
// namespaces, 8.2 ms of queueing per request there (hack/benchcontrollers). The
// registry stays in global-default: its TokenReviews follow logins, which anyone
// can send, and must not take the controller manager's seats.
func FlowSchema() *flowcontrolv1.FlowSchema {
	var subjects []flowcontrolv1.Subject
	for _, name := range Controllers().Usernames() {
		subjects = append(subjects, flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: name}})
	}
	all := []string{rbacv1.VerbAll}
	return &flowcontrolv1.FlowSchema{
		TypeMeta:   metav1.TypeMeta{APIVersion: flowcontrolv1.SchemeGroupVersion.String(), Kind: "FlowSchema"},
		ObjectMeta: metav1.ObjectMeta{Name: FlowSchemaName},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-high"},
			MatchingPrecedence:         800,
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: subjects,
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: all, APIGroups: all, Resources: all,
					ClusterScope: true, Namespaces: []string{flowcontrolv1.NamespaceEvery}}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: all, NonResourceURLs: all}},
			}},
		},
	}
}
