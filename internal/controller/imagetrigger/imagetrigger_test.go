package imagetrigger

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

const (
	digest1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	digest2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

type fakeStreams map[string]*imageapi.ImageStream

func (f fakeStreams) Stream(ns, name string) (*imageapi.ImageStream, bool) {
	is, ok := f[ns+"/"+name]
	return is, ok
}

func stream(ns, name, tag, digest string) *imageapi.ImageStream {
	is := &imageapi.ImageStream{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	is.Status.DockerImageRepository = "registry.test/" + ns + "/" + name
	is.Status.Tags = []imageapi.NamedTagEventList{{Tag: tag, Items: []imageapi.TagEvent{{Digest: digest}}}}
	return is
}

// fakeAuthz allows what allowed holds: "user namespace/stream".
type fakeAuthz map[string]bool

func (f fakeAuthz) Allowed(u rbacauthz.User, r rbacauthz.Request) (bool, string) {
	return f[u.Name+" "+r.Namespace+"/"+r.Name] && r.Verb == "get" && r.Subresource == imageapi.LayersSubresource, ""
}

func triggerAnnotation(from, container string) map[string]string {
	return map[string]string{Annotation: `[{"from":{"kind":"ImageStreamTag","name":"` + from + `"},"fieldPath":"spec.template.spec.containers[?(@.name==\"` + container + `\")].image"}]`}
}

func deployment(annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web", UID: "uid-web", Annotations: annotations},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "sidecar", Image: "busybox"}, {Name: "app", Image: " "}},
		}}},
	}
}

type rig struct {
	c        *Controller
	client   *fake.Clientset
	factory  informers.SharedInformerFactory
	recorder *record.FakeRecorder
	streams  fakeStreams
	authz    fakeAuthz
}

func newRig(t *testing.T, objs ...runtime.Object) *rig {
	t.Helper()
	r := &rig{client: fake.NewClientset(objs...), recorder: record.NewFakeRecorder(20), streams: fakeStreams{}, authz: fakeAuthz{}}
	r.factory = informers.NewSharedInformerFactory(r.client, 0)
	c, err := New(r.client, r.factory, Resolver{Streams: r.streams, Authz: r.authz, RegistryHost: "registry.test"}, r.recorder, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	for _, o := range objs {
		for _, k := range c.kinds {
			if _, _, ok := k.podSpec(o); ok {
				_ = k.informer.GetIndexer().Add(o)
			}
		}
	}
	return r
}

func (r *rig) events() []string {
	var out []string
	for {
		select {
		case e := <-r.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (r *rig) patches() int {
	n := 0
	for _, a := range r.client.Actions() {
		if a.GetVerb() == "patch" {
			n++
		}
	}
	return n
}

// A tag's image becomes the container's, by digest, once; the other container is
// left alone, and a second sync of the patched object writes nothing.
func TestTriggerSetsTheTagsImageOnce(t *testing.T) {
	d := deployment(triggerAnnotation("app:v1", "app"))
	r := newRig(t, d)
	r.streams["team/app"] = stream("team", "app", "v1", digest1)
	r.authz["system:serviceaccount:team:default team/app"] = true
	if _, err := r.c.sync(context.Background(), "Deployment/team/web"); err != nil {
		t.Fatal(err)
	}
	got, err := r.client.AppsV1().Deployments("team").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	containers := got.Spec.Template.Spec.Containers
	if containers[1].Image != "registry.test/team/app@"+digest1 || containers[0].Image != "busybox" {
		t.Fatalf("images after sync: %q, %q", containers[0].Image, containers[1].Image)
	}
	if ev := r.events(); len(ev) != 1 || !strings.HasPrefix(ev[0], "Normal ImageTriggered container app: image registry.test/team/app@"+digest1) {
		t.Fatalf("events: %q", ev)
	}
	_ = r.c.kinds["Deployment"].informer.GetIndexer().Update(got)
	if _, err := r.c.sync(context.Background(), "Deployment/team/web"); err != nil {
		t.Fatal(err)
	}
	if n := r.patches(); n != 1 {
		t.Fatalf("%d patches, want 1", n)
	}

	// The tag moves: the stream's change queues the workload, which rolls to it.
	r.streams["team/app"] = stream("team", "app", "v1", digest2)
	r.c.StreamChanged("team", "app")
	if key, _ := r.c.Queue.Get(); key != "Deployment/team/web" {
		t.Fatalf("queued %q", key)
	}
	if _, err := r.c.sync(context.Background(), "Deployment/team/web"); err != nil {
		t.Fatal(err)
	}
	got, _ = r.client.AppsV1().Deployments("team").Get(context.Background(), "web", metav1.GetOptions{})
	if img := got.Spec.Template.Spec.Containers[1].Image; img != "registry.test/team/app@"+digest2 {
		t.Fatalf("after the move: %q", img)
	}
}

// A tag of another project the pod's account may not pull: one Warning Event naming
// the account and the grant, however often synced, no patch, tried again later; after
// the grant, the image is set.
func TestCrossProjectTriggerObeysTheAccountsRBAC(t *testing.T) {
	ann := map[string]string{Annotation: `[{"from":{"kind":"ImageStreamTag","name":"app:v1","namespace":"src"},"fieldPath":"spec.template.spec.containers[?(@.name==\"app\")].image"}]`}
	d := deployment(ann)
	d.Spec.Template.Spec.ServiceAccountName = "runner"
	r := newRig(t, d)
	r.streams["src/app"] = stream("src", "app", "v1", digest1)
	for range 3 {
		after, err := r.c.sync(context.Background(), "Deployment/team/web")
		if err != nil || after != forbiddenRetry {
			t.Fatalf("sync: after %v, err %v", after, err)
		}
	}
	ev := r.events()
	want := "Warning FailedImageTrigger trigger for spec.template.spec.containers[?(@.name==\"app\")].image: service account team/runner, which runs the pods, may not pull image stream src/app (get imagestreams/layers), so the tag app:v1 is not followed; grant it with: pullgate policy add-role-to-user system:image-puller system:serviceaccount:team:runner -n src"
	if len(ev) != 1 || ev[0] != want {
		t.Fatalf("events:\n%q\nwant\n%q", ev, want)
	}
	if n := r.patches(); n != 0 {
		t.Fatalf("%d patches without the grant", n)
	}
	r.authz["system:serviceaccount:team:runner src/app"] = true
	if after, err := r.c.sync(context.Background(), "Deployment/team/web"); err != nil || after != 0 {
		t.Fatalf("sync after the grant: after %v, err %v", after, err)
	}
	got, _ := r.client.AppsV1().Deployments("team").Get(context.Background(), "web", metav1.GetOptions{})
	if img := got.Spec.Template.Spec.Containers[1].Image; img != "registry.test/src/app@"+digest1 {
		t.Fatalf("after the grant: %q", img)
	}
}

// What cannot be followed is an Event on the workload, never silence; a paused
// trigger and a tag with no image yet change nothing and say nothing.
func TestTriggerProblemsAreEvents(t *testing.T) {
	for _, tc := range []struct {
		name, annotation, want string
	}{
		{"unknown stream", `[{"from":{"kind":"ImageStreamTag","name":"nope:v1"},"fieldPath":"spec.template.spec.containers[?(@.name==\"app\")].image"}]`,
			"Warning FailedImageTrigger trigger for spec.template.spec.containers[?(@.name==\"app\")].image: image stream team/nope not found; push nope:v1 or run oc tag / oc import-image to create it"},
		{"no such container", `[{"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.template.spec.containers[?(@.name==\"api\")].image"}]`,
			"Warning FailedImageTrigger fieldPath \"spec.template.spec.containers[?(@.name==\\\"api\\\")].image\": no container named \"api\" in containers"},
		{"not an image", `[{"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.template.spec.containers[0].command"}]`,
			"Warning FailedImageTrigger fieldPath \"spec.template.spec.containers[0].command\" is not a container's image"},
		{"other kind", `[{"from":{"kind":"DockerImage","name":"busybox"},"fieldPath":"spec.template.spec.containers[0].image"}]`,
			"Warning FailedImageTrigger trigger for spec.template.spec.containers[0].image: from.kind \"DockerImage\" is not ImageStreamTag"},
		{"no tag", `[{"from":{"kind":"ImageStreamTag","name":"app"},"fieldPath":"spec.template.spec.containers[0].image"}]`,
			"Warning FailedImageTrigger trigger for spec.template.spec.containers[0].image: from.name \"app\" is not STREAM:TAG"},
		{"not JSON", `{`, "Warning FailedImageTrigger annotation image.openshift.io/triggers is not a JSON list of triggers"},
		{"duplicate", `[{"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.template.spec.containers[0].image"},{"from":{"kind":"ImageStreamTag","name":"app:v2"},"fieldPath":"spec.template.spec.containers[0].image"}]`,
			"Warning FailedImageTrigger annotation image.openshift.io/triggers: two triggers for fieldPath"},
		{"paused", `[{"from":{"kind":"ImageStreamTag","name":"nope:v1"},"fieldPath":"spec.template.spec.containers[0].image","paused":true}]`, ""},
		{"tag without image", `[{"from":{"kind":"ImageStreamTag","name":"app:v2"},"fieldPath":"spec.template.spec.containers[0].image"}]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, deployment(map[string]string{Annotation: tc.annotation}))
			r.streams["team/app"] = stream("team", "app", "v1", digest1)
			r.authz["system:serviceaccount:team:default team/app"] = true
			r.authz["system:serviceaccount:team:default team/nope"] = true
			if _, err := r.c.sync(context.Background(), "Deployment/team/web"); err != nil {
				t.Fatal(err)
			}
			ev := r.events()
			if tc.want == "" {
				if len(ev) != 0 {
					t.Fatalf("events: %q", ev)
				}
			} else if len(ev) != 1 || !strings.HasPrefix(ev[0], tc.want) {
				t.Fatalf("events: %q\nwant prefix %q", ev, tc.want)
			}
			if n := r.patches(); n != 0 {
				t.Fatalf("%d patches", n)
			}
		})
	}
}

// A CronJob's pod spec is under its job template; an index selects a container.
func TestCronJobTriggerByIndex(t *testing.T) {
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "nightly", Annotations: map[string]string{
			Annotation: `[{"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.jobTemplate.spec.template.spec.initContainers[0].image"}]`}},
		Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "old"}},
			Containers:     []corev1.Container{{Name: "main", Image: "busybox"}},
		}}}}},
	}
	r := newRig(t, cj)
	r.streams["team/app"] = stream("team", "app", "v1", digest1)
	r.authz["system:serviceaccount:team:default team/app"] = true
	if _, err := r.c.sync(context.Background(), "CronJob/team/nightly"); err != nil {
		t.Fatal(err)
	}
	got, _ := r.client.BatchV1().CronJobs("team").Get(context.Background(), "nightly", metav1.GetOptions{})
	if img := got.Spec.JobTemplate.Spec.Template.Spec.InitContainers[0].Image; img != "registry.test/team/app@"+digest1 {
		t.Fatalf("init container image %q", img)
	}
}

// The patch tests the image it replaces: an image changed since the informer saw it
// is not overwritten, and the sync fails to be retried from the new state.
func TestTriggerDoesNotOverwriteAConcurrentChange(t *testing.T) {
	d := deployment(triggerAnnotation("app:v1", "app"))
	r := newRig(t, d)
	r.streams["team/app"] = stream("team", "app", "v1", digest1)
	r.authz["system:serviceaccount:team:default team/app"] = true
	changed := d.DeepCopy()
	changed.Spec.Template.Spec.Containers[1].Image = "someone/else:v9"
	if _, err := r.client.AppsV1().Deployments("team").Update(context.Background(), changed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.sync(context.Background(), "Deployment/team/web"); err == nil {
		t.Fatal("sync over a concurrent change succeeded")
	}
	got, _ := r.client.AppsV1().Deployments("team").Get(context.Background(), "web", metav1.GetOptions{})
	if img := got.Spec.Template.Spec.Containers[1].Image; img != "someone/else:v9" {
		t.Fatalf("image %q", img)
	}
}

func TestContainerFieldPaths(t *testing.T) {
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init"}},
		Containers:     []corev1.Container{{Name: "a"}, {Name: "b"}},
	}
	for path, want := range map[string]string{
		`spec.template.spec.containers[?(@.name=="b")].image`:        "/spec/template/spec/containers/1/image",
		`spec.template.spec.containers[0].image`:                     "/spec/template/spec/containers/0/image",
		`spec.template.spec.initContainers[?(@.name=="init")].image`: "/spec/template/spec/initContainers/0/image",
		`spec.template.spec.containers[2].image`:                     "error",
		`spec.containers[0].image`:                                   "error",
		`spec.template.spec.containers[?(@.name=="b")]`:              "error",
		`spec.template.spec.containers[name=b].image`:                "error",
	} {
		_, pointer, err := Container(spec, "spec.template.spec", path)
		if (err != nil) != (want == "error") || err == nil && pointer != want {
			t.Errorf("%s: pointer %q, err %v; want %s", path, pointer, err, want)
		}
	}
}
