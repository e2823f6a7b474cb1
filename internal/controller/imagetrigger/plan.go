package imagetrigger

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// Authorizer decides RBAC requests (rbacauthz.Authorizer).
type Authorizer interface {
	Allowed(user rbacauthz.User, req rbacauthz.Request) (bool, string)
}

// Resolver works out what a workload's triggers ask for.
type Resolver struct {
	Streams imageapi.StreamReader
	Authz   Authorizer
	// RegistryHost is the integrated registry, for streams that do not record it.
	RegistryHost string
}

// PatchOp is one JSON patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value"`
}

// Plan is what a workload's triggers ask for now: the patch that sets each
// container's image to its tag's, what it changes (for the Event), and why a
// trigger could not be followed.
type Plan struct {
	Patch    []PatchOp
	Changes  []string
	Problems []string
	// Forbidden is set when a trigger's tag is one the pod's service account may not
	// pull: RBAC may grant it later.
	Forbidden bool
}

// Plan reads the triggers in annotations of a workload in namespace whose pod spec
// is spec, at specPath. Each container's image is tested before it is replaced, so
// a patch written over someone else's change fails instead of undoing it.
func (r Resolver) Plan(namespace string, annotations map[string]string, spec *corev1.PodSpec, specPath string) Plan {
	var p Plan
	triggers, err := Parse(annotations)
	if err != nil {
		p.Problems = append(p.Problems, err.Error())
		return p
	}
	account := spec.ServiceAccountName
	if account == "" {
		account = "default"
	}
	for _, t := range triggers {
		if t.Paused {
			continue
		}
		container, pointer, err := Container(spec, specPath, t.FieldPath)
		if err != nil {
			p.Problems = append(p.Problems, err.Error())
			continue
		}
		image, err := r.image(namespace, account, t)
		if err != nil {
			p.Problems = append(p.Problems, err.Error())
			var forbidden forbiddenError
			p.Forbidden = p.Forbidden || errors.As(err, &forbidden)
			continue
		}
		if image == "" || container.Image == image {
			continue
		}
		p.Patch = append(p.Patch, PatchOp{Op: "test", Path: pointer, Value: container.Image}, PatchOp{Op: "replace", Path: pointer, Value: image})
		p.Changes = append(p.Changes, fmt.Sprintf("container %s: image %s (%s)", container.Name, image, t.From.Name))
	}
	return p
}

// forbiddenError is a trigger the pod's service account may not pull.
type forbiddenError struct{ msg string }

func (e forbiddenError) Error() string { return e.msg }

// image is the image trigger t's tag points at, as pods pull it; "" while the tag
// has none.
func (r Resolver) image(namespace, account string, t Trigger) (string, error) {
	ns, stream, tag, err := t.Tag(namespace)
	if err != nil {
		return "", err
	}
	user := rbacauthz.ServiceAccountUser(namespace, account)
	req := rbacauthz.Request{Verb: "get", Namespace: ns, Group: imageapi.Group, Resource: imageapi.Resource, Subresource: imageapi.LayersSubresource, Name: stream}
	if ok, _ := r.Authz.Allowed(user, req); !ok {
		return "", forbiddenError{fmt.Sprintf("trigger for %s: service account %s/%s, which runs the pods, may not pull image stream %s/%s (get imagestreams/layers), so the tag %s is not followed; grant it with: pullgate policy add-role-to-user system:image-puller %s -n %s",
			t.FieldPath, namespace, account, ns, stream, t.From.Name, user.Name, ns)}
	}
	is, ok := r.Streams.Stream(ns, stream)
	if !ok {
		return "", fmt.Errorf("trigger for %s: image stream %s/%s not found; push %s or run oc tag / oc import-image to create it", t.FieldPath, ns, stream, t.From.Name)
	}
	ev, ok := is.Status.Current(tag)
	if !ok {
		return "", nil
	}
	return is.PullSpec(ev, r.RegistryHost), nil
}
