// Package imagetrigger rolls workloads when the image stream tags they follow move,
// as OpenShift's image trigger controller does: the annotation
// image.openshift.io/triggers (what `oc set triggers --from-image` and `oc new-app`
// write) names, per container, an ImageStreamTag; when the tag points at a new image
// the controller patches the container's image to it, by digest, and the workload's
// own controller rolls it out. A tag of another project is followed only if the
// workload's service account may pull it, as the registry would decide the pull.
package imagetrigger

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Annotation holds a workload's triggers, a JSON list of Trigger.
const Annotation = "image.openshift.io/triggers"

// Trigger links one container's image to an image stream tag (library-go's
// ObjectFieldTrigger, the annotation's format).
type Trigger struct {
	From      Reference `json:"from"`
	FieldPath string    `json:"fieldPath"`
	Paused    bool      `json:"paused,omitempty"`
}

// Reference is the tag a trigger follows: kind ImageStreamTag, name stream:tag, in
// namespace (the workload's when empty).
type Reference struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Namespace  string `json:"namespace,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// Parse reads the triggers of an object's annotations; none when it has no
// Annotation.
func Parse(annotations map[string]string) ([]Trigger, error) {
	value, ok := annotations[Annotation]
	if !ok {
		return nil, nil
	}
	var triggers []Trigger
	if err := json.Unmarshal([]byte(value), &triggers); err != nil {
		return nil, fmt.Errorf("annotation %s is not a JSON list of triggers: %v", Annotation, err)
	}
	seen := map[string]bool{}
	for _, t := range triggers {
		if seen[t.FieldPath] {
			return nil, fmt.Errorf("annotation %s: two triggers for fieldPath %q", Annotation, t.FieldPath)
		}
		seen[t.FieldPath] = true
	}
	return triggers, nil
}

// Tag is the stream, tag and namespace a trigger follows, for a workload in
// namespace.
func (t Trigger) Tag(namespace string) (ns, stream, tag string, err error) {
	if t.From.Kind != "ImageStreamTag" {
		return "", "", "", fmt.Errorf("trigger for %s: from.kind %q is not ImageStreamTag (the only kind followed)", t.FieldPath, t.From.Kind)
	}
	stream, tag, ok := strings.Cut(t.From.Name, ":")
	if !ok || stream == "" || tag == "" {
		return "", "", "", fmt.Errorf("trigger for %s: from.name %q is not STREAM:TAG", t.FieldPath, t.From.Name)
	}
	ns = t.From.Namespace
	if ns == "" {
		ns = namespace
	}
	return ns, stream, tag, nil
}

// Container is the container whose image fieldPath names, under the pod spec at
// specPath (spec.template.spec for a Deployment): as library-go,
// `containers[?(@.name=="app")].image`, `containers[0].image`, or the same under
// initContainers. It returns the JSON pointer of that image.
func Container(spec *corev1.PodSpec, specPath, fieldPath string) (*corev1.Container, string, error) {
	rest, ok := strings.CutPrefix(fieldPath, specPath+".")
	if !ok {
		return nil, "", fmt.Errorf("fieldPath %q is not under the pod spec %s", fieldPath, specPath)
	}
	field, list := "containers", spec.Containers
	if strings.HasPrefix(rest, "initContainers[") {
		field, list = "initContainers", spec.InitContainers
	}
	selector, ok := strings.CutPrefix(rest, field+"[")
	end := strings.Index(selector, "]")
	if !ok || end < 0 || selector[end+1:] != ".image" {
		return nil, "", fmt.Errorf("fieldPath %q is not a container's image (%s.containers[?(@.name==\"NAME\")].image)", fieldPath, specPath)
	}
	selector = selector[:end]
	pointer := "/" + strings.ReplaceAll(specPath, ".", "/") + "/" + field + "/"
	if i, err := strconv.Atoi(selector); err == nil {
		if i < 0 || i >= len(list) {
			return nil, "", fmt.Errorf("fieldPath %q: no %s at index %d", fieldPath, field, i)
		}
		return &list[i], pointer + strconv.Itoa(i) + "/image", nil
	}
	name, ok := strings.CutPrefix(selector, `?(@.name=="`)
	name, ok2 := strings.CutSuffix(name, `")`)
	if !ok || !ok2 {
		return nil, "", fmt.Errorf("fieldPath %q: selector [%s] is neither an index nor ?(@.name==\"NAME\")", fieldPath, selector)
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i], pointer + strconv.Itoa(i) + "/image", nil
		}
	}
	return nil, "", fmt.Errorf("fieldPath %q: no container named %q in %s", fieldPath, name, field)
}
