package credentials

import (
	"errors"
	"strings"
	"testing"
)

var fileSrc = Source{Kind: "file", Name: "/home/u/.docker/config.json"}

func parseOne(t *testing.T, doc string) Entry {
	t.Helper()
	cfg, err := ParseConfig([]byte(doc), fileSrc)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Entries) != 1 {
		t.Fatalf("got %d entries, want 1: %+v", len(cfg.Entries), cfg.Entries)
	}
	return cfg.Entries[0]
}

func TestParseAuthForms(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Credential
	}{
		{"padded auth", `{"auths":{"quay.io":{"auth":"dTpwYQ=="}}}`, Credential{Username: "u", Password: "pa"}},
		{"unpadded auth", `{"auths":{"quay.io":{"auth":"dTpwYQ"}}}`, Credential{Username: "u", Password: "pa"}},
		{"auth wins over username and password", `{"auths":{"quay.io":{"auth":"dTpwYQ==","username":"other","password":"x"}}}`, Credential{Username: "u", Password: "pa"}},
		{"username and password", `{"auths":{"quay.io":{"username":"u","password":"p"}}}`, Credential{Username: "u", Password: "p"}},
		{"password with colons", `{"auths":{"quay.io":{"auth":"` + EncodeAuth("u", "a:b:c") + `"}}}`, Credential{Username: "u", Password: "a:b:c"}},
		{"identity token", `{"auths":{"quay.io":{"identitytoken":"refresh"}}}`, Credential{IdentityToken: "refresh"}},
		{"registry token", `{"auths":{"quay.io":{"registrytoken":"bearer"}}}`, Credential{RegistryToken: "bearer"}},
		{"email kept", `{"auths":{"quay.io":{"auth":"dTpwYQ==","email":"you@example.com"}}}`, Credential{Username: "u", Password: "pa", Email: "you@example.com"}},
		{"empty entry is anonymous", `{"auths":{"quay.io":{}}}`, Credential{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := parseOne(t, tt.doc)
			if e.Credential != tt.want {
				t.Errorf("got %+v, want %+v", e.Credential, tt.want)
			}
			if e.Key != "quay.io" || e.Source != fileSrc {
				t.Errorf("entry key %q source %v", e.Key, e.Source)
			}
		})
	}
}

func TestParseKeepsFileOrder(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"auths":{"z.io":{},"a.io":{},"m.io":{}}}`), fileSrc)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range cfg.Entries {
		keys = append(keys, e.Key)
	}
	if strings.Join(keys, ",") != "z.io,a.io,m.io" {
		t.Errorf("order %v", keys)
	}
}

func TestParsePodmanAuthJSONWithNamespaces(t *testing.T) {
	doc := `{
	"auths": {
		"quay.io/org/repo": {"auth": "` + EncodeAuth("repo-user", "p1") + `"},
		"quay.io/org": {"auth": "` + EncodeAuth("org-user", "p2") + `"},
		"quay.io": {"auth": "` + EncodeAuth("host-user", "p3") + `"}
	}
}`
	cfg, err := ParseConfig([]byte(doc), Source{Kind: "file", Name: "auth.json"})
	if err != nil {
		t.Fatal(err)
	}
	var kr Keyring
	kr.AddLayer("node", cfg)
	got := users(t, &kr, "quay.io/org/repo:latest")
	if got != "repo-user,org-user,host-user" {
		t.Errorf("quay.io/org/repo: %s", got)
	}
	if got := users(t, &kr, "quay.io/other/x"); got != "host-user" {
		t.Errorf("quay.io/other/x: %s", got)
	}
}

func TestParseLegacyDockercfg(t *testing.T) {
	doc := `{"https://index.docker.io/v1/":{"auth":"` + EncodeAuth("hub", "p") + `","email":"e@x"},"quay.io":{"username":"q","password":"p"}}`
	for name, parse := range map[string]func([]byte, Source) (*Config, error){"ParseDockercfg": ParseDockercfg, "ParseConfig": ParseConfig} {
		cfg, err := parse([]byte(doc), Source{Kind: "file", Name: ".dockercfg"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(cfg.Entries) != 2 || cfg.Entries[0].Username != "hub" || cfg.Entries[1].Username != "q" {
			t.Errorf("%s: %+v", name, cfg.Entries)
		}
	}
}

func TestParseHelpersInFiles(t *testing.T) {
	doc := `{"auths":{"quay.io":{},"ghcr.io":{"auth":"` + EncodeAuth("g", "p") + `"}},"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud"}}`
	cfg, err := ParseConfig([]byte(doc), fileSrc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CredsStore != "desktop" {
		t.Errorf("credsStore %q", cfg.CredsStore)
	}
	// The empty quay.io placeholder means "in the store"; it is not an anonymous credential.
	var got []string
	for _, e := range cfg.Entries {
		got = append(got, e.Key+"="+e.Helper)
	}
	if strings.Join(got, ",") != "ghcr.io=,gcr.io=gcloud" {
		t.Errorf("entries %v", got)
	}
	sec, err := ParseDockerConfigJSON([]byte(doc), Source{Kind: "secret", Name: "ns/s"})
	if err != nil {
		t.Fatal(err)
	}
	// As the kubelet reads a secret: helpers ignored (and said so), the placeholder an
	// empty credential.
	if sec.CredsStore != "" || len(sec.Entries) != 2 || !sec.Entries[1].Anonymous() || len(sec.Warnings) != 2 {
		t.Errorf("secret form: %+v", sec)
	}
}

func TestParseErrorsNameSourceAndKeyNeverTheCredential(t *testing.T) {
	const secret = "s3cr3t-value"
	tests := []struct {
		name    string
		doc     string
		wantIs  error
		wantMsg []string
	}{
		{"not base64", `{"auths":{"quay.io":{"auth":"` + secret + `!!"}}}`, ErrBadAuth, []string{fileSrc.Name, `"quay.io"`, "not base64"}},
		{"no colon", `{"auths":{"quay.io":{"auth":"` + EncodeAuth(secret, "")[:8] + `"}}}`, ErrBadAuth, []string{fileSrc.Name, `"quay.io"`, "colon"}},
		{"duplicate key", `{"auths":{"quay.io":{"auth":"dTpw"},"quay.io":{"username":"u","password":"` + secret + `"}}}`, ErrDuplicateKey, []string{fileSrc.Name, `"quay.io"`, "the same registry key twice"}},
		{"duplicate nested field", `{"auths":{"quay.io":{"password":"a","password":"` + secret + `"}}}`, ErrDuplicateKey, []string{`$.auths["quay.io"].password`}},
		{"duplicate top-level field", `{"auths":{},"auths":{}}`, ErrDuplicateKey, []string{`$.auths`}},
		{"number out of range", `{"auths":{"quay.io":{"username":1e999999}}}`, nil, []string{fileSrc.Name, "username"}},
		{"key with a password in it", `{"auths":{"https://u:` + secret + `@quay.io":{"auth":"!"}}}`, ErrBadAuth, []string{"…@quay.io"}},
		{"wrong field type", `{"auths":{"quay.io":{"auth":42}}}`, nil, []string{`"quay.io"`, "auth"}},
		{"entry not an object", `{"auths":{"quay.io":"` + secret + `"}}`, nil, []string{`"quay.io"`, "object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.doc), fileSrc)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "999999") {
				t.Errorf("error %q leaks a value", err)
			}
			// As the kubelet reads a secret: an error too, and no value in it.
			if _, err := ParseDockerConfigJSON([]byte(tt.doc), fileSrc); err == nil || strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "999999") {
				t.Errorf("secret form: %v", err)
			}
		})
	}
}

func TestParseInvalidJSONGivesByteOffset(t *testing.T) {
	_, err := ParseConfig([]byte(`{"auths":{"quay.io":{"auth":"dTpw"},}}`), fileSrc)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Offset != 36 {
		t.Fatalf("got %v, want a ParseError at byte 36", err)
	}
	if !strings.Contains(err.Error(), "invalid JSON at byte 36") || !strings.Contains(err.Error(), fileSrc.Name) {
		t.Errorf("message %q", err)
	}
	if _, err := ParseConfig(nil, fileSrc); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
}
