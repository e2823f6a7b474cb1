package cli

import (
	"errors"
	"strings"
	"testing"
)

// explain pull refuses flags that contradict each other or are malformed with a
// usage error (exit code 2), naming the flag.
func TestExplainPullValidate(t *testing.T) {
	for _, c := range []struct {
		o    ExplainPullOptions
		want string
	}{
		{ExplainPullOptions{Probe: "auto"}, ""},
		{ExplainPullOptions{Probe: "auto", ServiceAccount: "a/default", Output: "json"}, ""},
		{ExplainPullOptions{Probe: "auto", ServiceAccount: "a/default", Secrets: []string{"a/s"}}, "give one or the other"},
		{ExplainPullOptions{Probe: "auto", ServiceAccount: "default"}, "want NAMESPACE/NAME"},
		{ExplainPullOptions{Probe: "auto", Secrets: []string{"a/"}}, `--secret "a/"`},
		{ExplainPullOptions{Probe: "auto", Output: "table"}, `--output "table"`},
		{ExplainPullOptions{Probe: "maybe"}, `--probe "maybe"`},
	} {
		err := c.o.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%+v: refused: %v", c.o, err)
			}
			continue
		}
		var code *ExitCodeError
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &code) || code.Code != 2 {
			t.Errorf("%+v: %v, want a usage error saying %q", c.o, err, c.want)
		}
	}
}
