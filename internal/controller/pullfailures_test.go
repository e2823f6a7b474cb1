package controller

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"pullgate.dev/pullgate/internal/explain"
)

// fakeExplainer answers every pod with report, counting the calls.
type fakeExplainer struct {
	report explain.Report
	calls  int
}

func (f *fakeExplainer) Pod(context.Context, string, string) (explain.Report, error) {
	f.calls++
	return f.report, nil
}

func waitingPod(reason string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "app", UID: "uid-1"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "localhost:5000/p1/app:v1"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason,
				Message: "pull access denied, repository does not exist or may require authorization: server message: insufficient_scope"}},
		}}},
	}
}

// A pod refused by the registry gets one Warning Event with explain's cause and fix,
// whatever the number of syncs; a running pod, or one explain finds would pull, none.
func TestPullFailuresRecordTheCauseOncePerPodAndCause(t *testing.T) {
	refused := explain.Report{Images: []explain.ImageReport{{
		Image: "localhost:5000/p1/app:v1", Container: "container app",
		Verdict: explain.Verdict{Cause: "system:serviceaccount:p2:default may not pull p1/app: no role binding in project p1 grants it system:image-puller",
			Fix: "pullgate policy add-role-to-user system:image-puller system:serviceaccount:p2:default -n p1"},
	}}}
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		report explain.Report
		events []string
	}{
		{"refused", waitingPod("ErrImagePull"), refused, []string{
			"Warning PullExplained container app cannot pull localhost:5000/p1/app:v1: system:serviceaccount:p2:default may not pull p1/app: no role binding in project p1 grants it system:image-puller. Fix: pullgate policy add-role-to-user system:image-puller system:serviceaccount:p2:default -n p1",
		}},
		{"back-off", waitingPod("ImagePullBackOff"), refused, []string{"Warning PullExplained container app cannot pull"}},
		{"running", waitingPod("ContainerCreating"), refused, nil},
		{"would pull", waitingPod("ErrImagePull"), explain.Report{Images: []explain.ImageReport{{
			Image: "localhost:5000/p1/app:v1", Container: "container app", Verdict: explain.Verdict{WouldPull: true, With: "secret p2/x"},
		}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.pod)
			factory := informers.NewSharedInformerFactory(client, 0)
			recorder := record.NewFakeRecorder(10)
			explainer := &fakeExplainer{report: tc.report}
			c, err := NewPullFailures(factory, explainer, recorder, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			for range 3 { // level-triggered: every sync sees the same failure
				if _, err := c.sync(t.Context(), "p2/app"); err != nil {
					t.Fatal(err)
				}
				_ = factory.Core().V1().Pods().Informer().GetIndexer().Add(tc.pod)
			}
			close(recorder.Events)
			var got []string
			for e := range recorder.Events {
				got = append(got, e)
			}
			if len(got) != len(tc.events) {
				t.Fatalf("events %q, want %d like %q", got, len(tc.events), tc.events)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.events[i]) {
					t.Errorf("event %q, want %q", got[i], tc.events[i])
				}
			}
			for _, e := range got {
				if strings.Contains(e, "Bearer") || strings.Contains(e, "eyJ") {
					t.Errorf("event holds a credential: %q", e)
				}
			}
		})
	}
}

// A pod deleted is forgotten: a new pod of the same name is told again.
func TestPullFailuresForgetDeletedPods(t *testing.T) {
	c := &PullFailures{told: map[types.UID]map[string]bool{}}
	if !c.firstTime("uid-1", "x") || c.firstTime("uid-1", "x") {
		t.Fatal("firstTime should be true once")
	}
	c.forget(waitingPod("ErrImagePull"))
	if !c.firstTime("uid-1", "x") {
		t.Error("a deleted pod's causes should be forgotten")
	}
}
