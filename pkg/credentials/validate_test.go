package credentials

import (
	"strings"
	"testing"
)

// A pull secret's file is refused when the kubelet would find no credential in it,
// with the reason; one with a credential passes.
func TestValidateCredentialFile(t *testing.T) {
	src := Source{Kind: "file", Name: "config.json"}
	for data, want := range map[string]string{
		`{"auths":{"quay.io":{"auth":"dTpw"}}}`: "",
		`{"auths":{}}`:                          "no registry credentials",
		`{"quay.io":{"auth":"dTpw"}}`:           "no registry credentials",
		`{"auths":`:                             "config.json",
	} {
		err := ValidateCredentialFile([]byte(data), src)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: refused: %v", data, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: got %v, want an error saying %q", data, err, want)
		}
	}
}
