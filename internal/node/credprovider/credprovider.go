// Package credprovider is pullgate's kubelet credential provider plugin (KEP-4412):
// the kubelet hands it a token of the pod's own service account, bound to the pod,
// for the audience the kubelet's CredentialProviderConfig names, and for the
// integrated registry's hosts the plugin answers with that token as the password. No
// pull secret is involved; the registry's token service reviews the token and RBAC
// decides, as for any other Kubernetes token.
package credprovider

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	v1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// APIVersion is the only request version the plugin speaks.
const APIVersion = "credentialprovider.kubelet.k8s.io/v1"

// Username is what the plugin puts beside the token; the token service ignores it.
const Username = "serviceaccount"

// expiryMargin keeps the kubelet from using a cached token in its last minute.
const expiryMargin = time.Minute

// Plugin answers the kubelet's requests.
type Plugin struct {
	// RegistryHosts are the integrated registry's host[:port] names.
	RegistryHosts []string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Respond reads one request and makes its response. Errors name what is wrong with
// the request and never include its token.
func (p Plugin) Respond(in io.Reader) (*v1.CredentialProviderResponse, error) {
	var req v1.CredentialProviderRequest
	dec := json.NewDecoder(in)
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("reading the CredentialProviderRequest from stdin: %v", describe(err))
	}
	if req.APIVersion != APIVersion || req.Kind != "CredentialProviderRequest" {
		return nil, fmt.Errorf("request apiVersion %q, kind %q: want %s CredentialProviderRequest", req.APIVersion, req.Kind, APIVersion)
	}
	named, err := reference.ParseNormalizedNamed(req.Image)
	if err != nil {
		return nil, fmt.Errorf("request image %q: %v", req.Image, err)
	}
	host := reference.Domain(named)
	resp := &v1.CredentialProviderResponse{
		TypeMeta:     metav1.TypeMeta{APIVersion: APIVersion, Kind: "CredentialProviderResponse"},
		CacheKeyType: v1.RegistryPluginCacheKeyType,
	}
	if !slices.Contains(p.RegistryHosts, host) {
		// Not pullgate's registry: no credential, cached for no time; the kubelet goes
		// on to the pod's pull secrets.
		resp.CacheDuration = &metav1.Duration{}
		return resp, nil
	}
	if req.ServiceAccountToken == "" {
		return nil, fmt.Errorf("request for %s has no serviceAccountToken: set tokenAttributes.serviceAccountTokenAudience: pullgate-registry in the kubelet's CredentialProviderConfig", host)
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	resp.Auth = map[string]v1.AuthConfig{host: {Username: Username, Password: req.ServiceAccountToken}}
	resp.CacheDuration = &metav1.Duration{Duration: cacheFor(req.ServiceAccountToken, now())}
	return resp, nil
}

// cacheFor is how long the kubelet may reuse the token: until a minute before it
// expires, or not at all when its expiry cannot be read.
func cacheFor(token string, now time.Time) time.Duration {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return 0
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return 0
	}
	left := time.Unix(claims.Exp, 0).Sub(now) - expiryMargin
	if left < 0 {
		return 0
	}
	return left.Truncate(time.Second)
}

// describe is a decoding error without the input it was reading.
func describe(err error) string {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("field %q: want %s", typ.Field, typ.Type)
	}
	if errors.Is(err, io.EOF) {
		return "empty input"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: it ends early"
	}
	return err.Error()
}

// Run answers one request from in on out, as the kubelet runs a plugin.
func (p Plugin) Run(in io.Reader, out io.Writer) error {
	resp, err := p.Respond(in)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(resp)
}
