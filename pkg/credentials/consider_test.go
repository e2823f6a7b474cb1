package credentials

import (
	"strings"
	"testing"
)

// The seed's two keys for one registry: the more specific one is tried first for its
// repositories, and each entry says why it did or did not match.
func TestConsider(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"auths":{
		"quay.io":{"auth":"dXNlcjpwYXNz"},
		"quay.io/repository-main":{"auth":"bWFpbjpwYXNz"},
		"*.example.com":{"auth":"Z2xvYjpwYXNz"},
		"registry.example.com:5000":{"auth":"cG9ydDpwYXNz"}}}`), Source{Kind: "secret", Name: "a/pull"})
	if err != nil {
		t.Fatal(err)
	}
	var k Keyring
	k.AddLayer("pod secrets", cfg)
	for _, tc := range []struct {
		image   string
		matched []string // user names, in order
		whys    map[string]string
	}{
		{"quay.io/repository-main/app:v1", []string{"main", "user"}, map[string]string{
			"main": `path prefix "/repository-main" of "/repository-main/app"`,
			"glob": `host "*.example.com" is not "quay.io"`,
			"port": `host "registry.example.com" is not "quay.io"`,
		}},
		{"quay.io/other/app", []string{"user"}, map[string]string{
			"main": `path "/repository-main" is not a prefix of "/other/app"`,
		}},
		{"registry.example.com/app", []string{"glob"}, map[string]string{
			"glob": `glob "*.example.com" matches "registry.example.com"`,
			"port": `port "5000" is not the image's ""`,
		}},
	} {
		got, err := k.Consider(tc.image)
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, c := range got {
			if c.Matched {
				order = append(order, c.Username)
			}
			if want, ok := tc.whys[c.Username]; ok && !strings.Contains(c.Why, want) {
				t.Errorf("%s, %s: why %q, want %q", tc.image, c.Username, c.Why, want)
			}
		}
		if strings.Join(order, ",") != strings.Join(tc.matched, ",") || len(got) != 4 {
			t.Errorf("%s: matched %v of %d, want %v of 4", tc.image, order, len(got), tc.matched)
		}
	}
}
