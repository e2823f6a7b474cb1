package imageapi

import (
	"context"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

// CRD is the CustomResourceDefinition of ImageStream.
func CRD() *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: CRDName},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural: Resource, Singular: "imagestream", Kind: Kind, ListKind: Kind + "List",
			},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: Version, Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
					{Name: "Repository", Type: "string", JSONPath: ".status.dockerImageRepository"},
					{Name: "Tags", Type: "string", JSONPath: ".status.tagNames"},
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
				},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", XPreserveUnknownFields: &preserve},
						"status": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"dockerImageRepository":       str,
							"publicDockerImageRepository": str,
							"tagNames":                    str,
							"tags": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
								Type: "object", Required: []string{"tag", "items"},
								Properties: map[string]apiextensionsv1.JSONSchemaProps{
									"tag": str,
									"items": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
										Type: "object", Required: []string{"digest", "created"},
										Properties: map[string]apiextensionsv1.JSONSchemaProps{
											"created":      {Type: "string", Format: "date-time"},
											"digest":       str,
											"mediaType":    str,
											"artifactType": str,
											"size":         {Type: "integer", Format: "int64"},
											"generation":   {Type: "integer", Format: "int64"},
											// An import's source, outside the registry.
											"dockerImageReference": str,
										},
									}}},
									// OpenShift's TagEventConditions, as image.openshift.io serves them.
									"conditions": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
										Type: "object", XPreserveUnknownFields: &preserve,
									}}},
								},
							}}},
							"referrers": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
								Type: "object", Required: []string{"subject", "digest", "created"},
								Properties: map[string]apiextensionsv1.JSONSchemaProps{
									"subject":      str,
									"digest":       str,
									"mediaType":    str,
									"artifactType": str,
									"created":      {Type: "string", Format: "date-time"},
								},
							}}},
						}},
					},
				}},
			}},
		},
	}
}

// CRDName is the ImageStream CRD's name.
const CRDName = Resource + "." + Group

// EnsureCRD creates or updates the ImageStream CRD and waits until it is served; it
// is an installer's step, run with an administrator's client.
func EnsureCRD(ctx context.Context, cfg *rest.Config) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	want := CRD()
	existing, err := crds.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := crds.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", want.Name, err)
		}
	case err != nil:
		return fmt.Errorf("reading CRD %s: %w", want.Name, err)
	default:
		existing.Spec = want.Spec
		if _, err := crds.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating CRD %s: %w", want.Name, err)
		}
	}
	return WaitForCRD(ctx, cfg)
}

// WaitForCRD waits until the ImageStream CRD is served, for at most a minute; it
// only reads the CRD (pullgate's components install nothing). A CRD that does not
// exist is an error saying how to install it.
func WaitForCRD(ctx context.Context, cfg *rest.Config) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	var last error
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		crd, err := crds.Get(ctx, CRDName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, fmt.Errorf("CRD %s is not installed: kubectl apply --server-side -k deploy/ (pullgate up installs it itself)", CRDName)
		}
		if err != nil {
			last = err
			return false, nil
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		last = fmt.Errorf("CRD %s is not established yet", CRDName)
		return false, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w: %w", err, last)
	}
	return err
}
