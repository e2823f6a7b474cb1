package credentials

import "fmt"

// Credential is what one entry of a pull secret holds. At most one of the forms is
// normally set: username/password, an identity (refresh) token, or a registry
// (bearer) token.
type Credential struct {
	Username      string
	Password      string
	IdentityToken string
	RegistryToken string
	Email         string
}

// Anonymous reports whether the credential holds nothing to authenticate with.
func (c Credential) Anonymous() bool {
	return c.Username == "" && c.Password == "" && c.IdentityToken == "" && c.RegistryToken == ""
}

// String never shows the secret parts.
func (c Credential) String() string {
	switch {
	case c.RegistryToken != "":
		return "registry token"
	case c.IdentityToken != "":
		return "identity token"
	case c.Username != "":
		return fmt.Sprintf("user %q", c.Username)
	default:
		return "anonymous"
	}
}

// Source says where a credential came from, for errors and for explaining matches.
type Source struct {
	// Kind is "file" or "secret" (or any word a caller chooses, e.g. "flag").
	Kind string
	// Name is the file path, or namespace/name of a Secret.
	Name string
	// DataKey is the Secret's data key that held the config (Secrets only).
	DataKey string
	// UID is the Secret's UID (Secrets only): a secret made again under the same name
	// is another source.
	UID string
}

func (s Source) String() string {
	switch {
	case s.Kind == "":
		return "config"
	case s.DataKey != "":
		return fmt.Sprintf("%s %s (key %s)", s.Kind, s.Name, s.DataKey)
	default:
		return fmt.Sprintf("%s %s", s.Kind, s.Name)
	}
}

// Entry is one credential under the key it was written with.
type Entry struct {
	// Key is the registry key as written in the source, e.g. "https://quay.io/v1/".
	Key string
	Credential
	Source Source
	// Helper, when set, names docker-credential-<Helper>, which holds the credential.
	Helper string
}

// Config is one parsed credentials file or secret.
type Config struct {
	Source  Source
	Entries []Entry
	// CredsStore is the helper that holds credentials for every registry without a
	// credHelpers entry (files only).
	CredsStore string
	// Warnings are things a user should fix that did not stop the parse.
	Warnings []string
}
