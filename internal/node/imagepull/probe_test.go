package imagepull

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"pullgate.dev/pullgate/pkg/credentials"
)

// A probe tries credentials in order, stops at the first let in, downloads nothing
// and never shows a secret.
func TestProbeStopsAtTheFirstCredentialLetIn(t *testing.T) {
	var gets int
	locked := false // until the image is pushed
	image, _ := serve(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if user, pass, ok := r.BasicAuth(); locked && (!ok || user != "alice" || pass != "right") {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				gets++
			}
			h.ServeHTTP(w, r)
		})
	})
	locked = true
	wrong := credentials.Candidate{Description: "secret a/wrong", AuthConfig: authConfig("bob", "hunter2")}
	right := credentials.Candidate{Description: "secret a/right", AuthConfig: authConfig("alice", "right")}
	never := credentials.Candidate{Description: "secret a/never", AuthConfig: authConfig("carol", "unused")}
	p := &Puller{}

	got := p.Probe(context.Background(), Request{Image: mustImage(t, image), Credentials: []credentials.Candidate{wrong, right, never}})
	if got.Err != nil || len(got.Steps) != 2 || got.Steps[0].OK || !got.Steps[1].OK || got.Steps[1].Manifest != "found" {
		t.Fatalf("probe %+v", got)
	}
	if !strings.Contains(got.Steps[0].Manifest, "401") {
		t.Errorf("the refused step says %q", got.Steps[0].Manifest)
	}
	if gets != 0 {
		t.Errorf("the probe downloaded %d blobs", gets)
	}

	got = p.Probe(context.Background(), Request{Image: mustImage(t, image), Credentials: []credentials.Candidate{wrong}})
	if got.Err == nil || got.Err.Reason != ReasonUnauthorized || strings.Contains(got.Err.Message, "hunter2") {
		t.Fatalf("probe with a wrong password: %+v", got.Err)
	}
}
