package healthz

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// ok when every check passes (with ?verbose, one line each and their details); 503
// naming the failed check, with its error, when one fails.
func TestHandler(t *testing.T) {
	healthy := Check{Name: "registry", Check: func(*http.Request) error { return nil }}
	leader := Check{Name: "controllers", Check: func(*http.Request) error { return nil }, Detail: func() string { return "led by replica-2" }}
	get := func(h http.Handler, path string) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w.Code, w.Body.String()
	}
	if code, body := get(Handler(healthy, leader), "/healthz"); code != http.StatusOK || body != "ok" {
		t.Errorf("healthy: %d %q", code, body)
	}
	if code, body := get(Handler(healthy, leader), "/healthz?verbose"); code != http.StatusOK || body != "[+]registry ok\n[+]controllers ok: led by replica-2\nhealthz check passed\n" {
		t.Errorf("verbose: %d %q", code, body)
	}
	draining := Check{Name: "registry", Check: func(*http.Request) error { return errors.New("draining") }}
	if code, body := get(Handler(draining, leader), "/healthz"); code != http.StatusServiceUnavailable || body != "[-]registry failed: draining\n[+]controllers ok: led by replica-2\nhealthz check failed\n" {
		t.Errorf("failing: %d %q", code, body)
	}
}
