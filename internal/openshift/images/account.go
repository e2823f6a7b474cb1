package images

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Account is the image API's service account, and what it may do at the
// integrated registry: pull and push any stream (imagestreams/layers get and
// update), nothing else.
const (
	AccountNamespace = "pullgate-system"
	AccountName      = "pullgate-image-api"
	AccountRole      = "pullgate:image-api"
)

// AccountAuth is the account's credential at the registry: a bound token for the
// registry's audience, requested for an hour and renewed when half of it is left.
type AccountAuth struct {
	Client   kubernetes.Interface
	Audience string

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// Authorization implements authn.Authenticator.
func (a *AccountAuth) Authorization() (*authn.AuthConfig, error) {
	token, err := a.current(context.Background())
	if err != nil {
		return nil, err
	}
	return &authn.AuthConfig{Username: AccountName, Password: token}, nil
}

func (a *AccountAuth) current(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Now().Before(a.renewAt) {
		return a.token, nil
	}
	ttl := int64(time.Hour / time.Second)
	tr, err := a.Client.CoreV1().ServiceAccounts(AccountNamespace).CreateToken(ctx, AccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{a.Audience}, ExpirationSeconds: &ttl},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("a registry token for %s/%s: %w", AccountNamespace, AccountName, err)
	}
	a.token = tr.Status.Token
	a.renewAt = time.Now().Add(time.Until(tr.Status.ExpirationTimestamp.Time) / 2)
	return a.token, nil
}
