package imagelookup

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// WebhookName is the MutatingWebhookConfiguration that sends pods and workloads
// to up's webhook; DeployWebhookName to the registry replicas of deploy/.
const (
	WebhookName       = "pullgate-image-lookup"
	DeployWebhookName = "pullgate-registry-image-lookup"
)

// DeployPort and DeployPath are where the registry replicas of deploy/ serve the
// webhook (pullgate registry serve --image-lookup-listen).
const (
	DeployPort = 8443
	DeployPath = "/image-lookup"
)

// Configuration is the webhook's registration for url, trusted through caBundle.
// It fails open (failurePolicy Ignore): resolution is a convenience, and a pod whose
// name was not resolved still names its image — pulled from where the name says,
// and failing there visibly — whereas failing closed would stop every pod of the
// cluster while pullgate is down. pullgate's own namespaces and kube-system are
// left out.
func Configuration(url string, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	return configuration(WebhookName, admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle})
}

// DeployConfiguration is the registration deploy/ installs: Service
// pullgate-system/pullgate-registry, port DeployPort; its caBundle (the CA of the
// registry's certificate) is the installer's to add.
func DeployConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	path, port := DeployPath, int32(DeployPort)
	c := configuration(DeployWebhookName, admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: "pullgate-system", Name: "pullgate-registry", Path: &path, Port: &port}})
	c.TypeMeta = metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingWebhookConfiguration"}
	return c
}

func configuration(name string, client admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.MutatingWebhookConfiguration {
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(5)
	equivalent := admissionregistrationv1.Equivalent
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	rule := func(group string, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources}}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "pullgate"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "image-lookup.pullgate.dev",
			ClientConfig:            client,
			Rules:                   []admissionregistrationv1.RuleWithOperations{rule("", "pods"), rule("apps", "deployments", "statefulsets", "daemonsets", "replicasets"), rule("batch", "jobs", "cronjobs")},
			FailurePolicy:           &ignore,
			MatchPolicy:             &equivalent,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "pullgate-system"}}}},
		}},
	}
}

// Register creates or updates the webhook's configuration.
func Register(ctx context.Context, client kubernetes.Interface, url string, caBundle []byte) error {
	want := Configuration(url, caBundle)
	hooks := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	existing, err := hooks.Get(ctx, WebhookName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = hooks.Create(ctx, want, metav1.CreateOptions{})
	case err == nil:
		existing.Webhooks, existing.Labels = want.Webhooks, want.Labels
		_, err = hooks.Update(ctx, existing, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("mutatingwebhookconfiguration %s: %w", WebhookName, err)
	}
	return nil
}
