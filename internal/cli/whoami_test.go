package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// whoami prints the user the API server's SelfSubjectReview names, and says what it
// was asking when that fails.
func TestWhoAmI(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authenticationv1.SelfSubjectReview{Status: authenticationv1.SelfSubjectReviewStatus{UserInfo: authenticationv1.UserInfo{Username: "alice"}}}, nil
	})
	s, out, _ := streams()
	if err := (&WhoAmIOptions{IOStreams: s, Client: client}).Run(context.Background()); err != nil || out.String() != "alice\n" {
		t.Fatalf("whoami: %q %v", out, err)
	}
	failing := fake.NewClientset()
	failing.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	if err := (&WhoAmIOptions{IOStreams: s, Client: failing}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "asking the API server who you are") {
		t.Errorf("a failing review: %v", err)
	}
}
