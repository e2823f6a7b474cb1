package tokenserver

import (
	"errors"
	"reflect"
	"testing"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		raw  string
		want Scope
	}{
		{"repository:project-b/app:pull", Scope{Type: "repository", Name: "project-b/app", Actions: []string{"pull"}}},
		{"repository:project-b/app:pull,push", Scope{Type: "repository", Name: "project-b/app", Actions: []string{"pull", "push"}}},
		{"repository(plugin):a/b:*", Scope{Type: "repository", Class: "plugin", Name: "a/b", Actions: []string{"*"}}},
		{"repository:localhost:5000/a/b:delete", Scope{Type: "repository", Name: "localhost:5000/a/b", Actions: []string{"delete"}}},
		{"registry:catalog:*", Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}}},
	}
	for _, tt := range tests {
		got, err := ParseScope(tt.raw)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseScope(%q) = %+v, %v; want %+v", tt.raw, got, err, tt.want)
		}
		if got.String() != tt.raw {
			t.Errorf("String() = %q, want %q", got.String(), tt.raw)
		}
	}
}

func TestParseScopeRefusals(t *testing.T) {
	tests := map[string]string{
		"repository":                     "UNSUPPORTED",
		"repository:a/b":                 "UNSUPPORTED",
		"repository:a/b:":                "UNSUPPORTED",
		"repository:a/b:pull,fly":        "UNSUPPORTED",
		"repository:A/B:pull":            "NAME_INVALID",
		"repository:a//b:pull":           "NAME_INVALID",
		"registry:everything:*":          "UNSUPPORTED",
		"registry:catalog:pull":          "UNSUPPORTED",
		"blob:a/b:pull":                  "UNSUPPORTED",
		"repository(plugin:a/b:pull":     "UNSUPPORTED",
		"(plugin):a/b:pull":              "UNSUPPORTED",
		"repository:" + long() + ":pull": "NAME_INVALID",
	}
	for raw, code := range tests {
		_, err := ParseScope(raw)
		var se *ScopeError
		if !errors.As(err, &se) || se.Code != code {
			t.Errorf("ParseScope(%q) = %v, want code %s", raw, err, code)
		}
	}
}

func long() string {
	b := make([]byte, 300)
	for i := range b {
		b[i] = 'a'
	}
	return string(b) + "/x"
}

func TestParseScopesSplitsSpaces(t *testing.T) {
	got, err := ParseScopes([]string{"repository:a/b:pull repository:c/d:push", "registry:catalog:*"})
	if err != nil || len(got) != 3 {
		t.Fatalf("got %v %v", got, err)
	}
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"repository:a/b:pull,push", "repository(x):h:5000/a/b:*", "registry:catalog:*", ":::", "a(b):c:d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := ParseScope(raw)
		if err != nil {
			var se *ScopeError
			if !errors.As(err, &se) || se.Code == "" {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		again, err := ParseScope(s.String())
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("%q → %+v → %q → %+v, %v", raw, s, s.String(), again, err)
		}
	})
}

func TestGrants(t *testing.T) {
	var g Grants
	for _, s := range []string{"main-user=repository-main/*:pull", "developer=*:pull,push"} {
		gr, err := ParseGrant(s)
		if err != nil {
			t.Fatal(err)
		}
		g = append(g, gr)
	}
	for _, tc := range []struct {
		user, action, ns, name string
		want                   bool
	}{
		{"main-user", "pull", "repository-main", "app", true},
		{"main-user", "pull", "other", "app", false},
		{"main-user", "push", "repository-main", "app", false},
		{"developer", "push", "team", "app", true},
		{"nobody", "pull", "team", "app", false},
	} {
		if got, _ := g.Allowed(rbacauthz.User{Name: tc.user}, tokenauth.RequestFor(tc.action, tc.ns, tc.name)); got != tc.want {
			t.Errorf("%s %s %s/%s: %v, want %v", tc.user, tc.action, tc.ns, tc.name, got, tc.want)
		}
	}
	if _, err := ParseGrant("no-equals"); err == nil {
		t.Error("a grant without USER= was accepted")
	}
}
