package project

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
)

// Subject is oc's reading of a name given to a grant: for a group command a group;
// otherwise system:serviceaccount:NS:NAME (a valid one) is that service account and
// anything else a user.
func Subject(name string, group bool) rbacv1.Subject {
	if group {
		return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
	}
	if ns, sa, err := serviceaccount.SplitUsername(name); err == nil {
		return ServiceAccount(ns, sa)
	}
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

// ServiceAccount is the subject for service account ns/name.
func ServiceAccount(ns, name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
}

// Subjects reads each of names with Subject.
func Subjects(names []string, group bool) []rbacv1.Subject {
	out := make([]rbacv1.Subject, 0, len(names))
	for _, n := range names {
		out = append(out, Subject(n, group))
	}
	return out
}
