package controller

import (
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// liveNamespace reports whether namespace name exists and is not being deleted: a
// per-namespace controller has nothing to do otherwise.
func liveNamespace(namespaces corelisters.NamespaceLister, name string) (bool, error) {
	ns, err := namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return ns.Status.Phase != corev1.NamespaceTerminating && ns.DeletionTimestamp == nil, nil
}

// fieldManager names pullgate's controllers in managedFields.
const fieldManager = "pullgate-controllers"
