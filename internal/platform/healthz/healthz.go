// Package healthz serves /healthz as Kubernetes components do: "ok" when every check
// passes, 503 naming the failed checks otherwise, and with ?verbose one line per check
// with what it knows (which replica leads, say).
package healthz

import (
	"fmt"
	"net/http"
	"strings"
)

// Check is one thing /healthz checks.
type Check struct {
	Name string
	// Check fails when this part is unhealthy.
	Check func(*http.Request) error
	// Detail, when set, is shown after the check's name with ?verbose.
	Detail func() string
}

// Handler answers /healthz from checks.
func Handler(checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		failed := false
		for _, c := range checks {
			err := c.Check(r)
			detail := ""
			if c.Detail != nil {
				detail = ": " + c.Detail()
			}
			if err != nil {
				failed = true
				fmt.Fprintf(&b, "[-]%s failed: %v%s\n", c.Name, err, detail)
			} else {
				fmt.Fprintf(&b, "[+]%s ok%s\n", c.Name, detail)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if failed {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, b.String())
			fmt.Fprintln(w, "healthz check failed")
			return
		}
		if _, verbose := r.URL.Query()["verbose"]; verbose {
			fmt.Fprint(w, b.String())
			fmt.Fprintln(w, "healthz check passed")
			return
		}
		fmt.Fprint(w, "ok")
	})
}
