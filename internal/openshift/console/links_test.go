package console

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A used login link is not the end: the console's owner asks up's socket for a fresh
// link, which logs in once and ends the session the old link opened. The socket is
// the owner's alone.
func TestAFreshLoginLinkEndsTheOldSession(t *testing.T) {
	s, _ := testServer(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b"}})
	s.base = "http://" + host
	h := s.Handler()
	curls := login(t, s) // someone else opened the printed link first

	socket := LinkSocket(t.TempDir())
	if err := ServeLoginLinks(t.Context(), socket, s); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the link socket: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	link, err := RequestLoginURL(t.Context(), socket)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "http://"+host+"/login?token=") || strings.HasSuffix(link, "the-token") {
		t.Fatalf("fresh link %q", link)
	}
	w := request(h, "GET", strings.TrimPrefix(link, "http://"+host), nil, nil)
	if w.Code != http.StatusSeeOther || len(w.Result().Cookies()) != 1 {
		t.Fatalf("the fresh link: %d", w.Code)
	}
	mine := w.Result().Cookies()[0]
	if w := request(h, "GET", "/projects", nil, nil, mine); w.Code != http.StatusOK {
		t.Errorf("the fresh link's session: %d", w.Code)
	}
	if w := request(h, "GET", "/projects", nil, nil, curls); w.Code != http.StatusUnauthorized {
		t.Errorf("the old session after the fresh link was used: %d, want 401", w.Code)
	}
	if w := request(h, "GET", strings.TrimPrefix(link, "http://"+host), nil, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("the fresh link used twice: %d", w.Code)
	}
	if _, err := RequestLoginURL(t.Context(), filepath.Join(t.TempDir(), "console.sock")); err == nil || !strings.Contains(err.Error(), "start pullgate up") {
		t.Errorf("no up running: %v", err)
	}
}
