package project

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// oc's reading of user names.
func TestSubject(t *testing.T) {
	for name, want := range map[string]rbacv1.Subject{
		"system:serviceaccount:a:default": {Kind: rbacv1.ServiceAccountKind, Namespace: "a", Name: "default"},
		"alice":                           {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"},
		"system:serviceaccount:a":         {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccount:a"},
		"system:serviceaccount:a:b:c":     {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccount:a:b:c"},
	} {
		if got := Subject(name, false); got != want {
			t.Errorf("Subject(%q) = %+v, want %+v", name, got, want)
		}
	}
	if got := Subject("system:serviceaccounts:a", true); got.Kind != rbacv1.GroupKind {
		t.Errorf("a group name read as %+v", got)
	}
}
