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

// -t, -c and --show-server print the session's token, context and server, and -t
// without a token says so, as oc's whoami does.
func TestWhoAmIShowsTheSession(t *testing.T) {
	for _, tc := range []struct {
		o    WhoAmIOptions
		want string
	}{
		{WhoAmIOptions{ShowToken: true, Token: "sha256~abc"}, "sha256~abc\n"},
		{WhoAmIOptions{ShowContext: true, Context: "dev"}, "dev\n"},
		{WhoAmIOptions{ShowServer: true, Server: "https://127.0.0.1:6443"}, "https://127.0.0.1:6443\n"},
	} {
		s, out, _ := streams()
		tc.o.IOStreams = s
		if err := tc.o.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := tc.o.Run(context.Background()); err != nil || out.String() != tc.want {
			t.Errorf("%+v: %q %v", tc.o, out, err)
		}
	}
	if err := (&WhoAmIOptions{ShowToken: true}).Validate(); err == nil || err.Error() != "no token is currently in use for this session" {
		t.Errorf("-t with a certificate: %v", err)
	}
}
