package cli

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"pullgate.dev/pullgate/internal/openshift/project"
)

func newProjectRun(t *testing.T, o *NewProjectOptions, name string) (string, error) {
	t.Helper()
	s, out, _ := streams()
	o.IOStreams, o.Request.Name = s, name
	err := o.Validate()
	if err == nil {
		err = o.Run(context.Background())
	}
	return out.String(), err
}

// new-project sends a ProjectRequest with oc's flags (what lets a self-provisioner
// make a project), switches the context unless told not to, and prints oc's line;
// reserved names are refused before anything is sent.
func TestNewProject(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{project.ProjectRequests: "ProjectRequestList"})
	var sent []*unstructured.Unstructured
	client.PrependReactor("create", "projectrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
		if obj.GetName() == "taken" {
			return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Group: "project.openshift.io", Resource: "project"}, "taken")
		}
		sent = append(sent, obj)
		return true, obj, nil
	})
	var switched []string
	o := &NewProjectOptions{Client: client, Server: "https://127.0.0.1:6443", SwitchTo: func(ns string) error { switched = append(switched, ns); return nil }}
	o.Request.DisplayName, o.Request.Description = "Team A", "the A team"
	out, err := newProjectRun(t, o, "team-a")
	if err != nil || out != "Now using project \"team-a\" on server \"https://127.0.0.1:6443\".\n" {
		t.Fatalf("new-project: %q %v", out, err)
	}
	if len(sent) != 1 || sent[0].GetKind() != "ProjectRequest" || sent[0].Object["displayName"] != "Team A" || sent[0].Object["description"] != "the A team" {
		t.Errorf("sent %v", sent)
	}
	if len(switched) != 1 || switched[0] != "team-a" {
		t.Errorf("context switched to %v", switched)
	}
	o.SkipConfigWrite = true
	if _, err := newProjectRun(t, o, "team-b"); err != nil || len(switched) != 1 {
		t.Errorf("--skip-config-write: %v, switched %v", err, switched)
	}
	if _, err := newProjectRun(t, o, "taken"); !apierrors.IsAlreadyExists(err) {
		t.Errorf("a taken name: %v", err)
	}
	for name, want := range map[string]string{"kube-evil": `starting with "kube-"`, "pullgate-node": `starting with "pullgate-"`, "default": `named "default"`} {
		out, err := newProjectRun(t, o, name)
		if err == nil || !strings.Contains(err.Error(), want) || out != "" {
			t.Errorf("new-project %s: %q %v, want an error saying %q", name, out, err, want)
		}
	}
	if len(sent) != 2 {
		t.Errorf("%d requests sent, want 2 (refused names are not sent)", len(sent))
	}
}
