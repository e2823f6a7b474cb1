package credentials

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// authEntry is one value of "auths" (or of a legacy .dockercfg), as docker, podman
// and the kubelet write it.
type authEntry struct {
	Auth          string `json:"auth,omitempty"`
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Email         string `json:"email,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// ParseConfig reads a Docker config.json or a Podman auth.json. Keys keep the order
// of the file. A document without "auths" but with registry keys at the top level is
// read as a legacy .dockercfg.
func ParseConfig(data []byte, src Source) (*Config, error) {
	fields, err := objectFields(data, src)
	if err != nil {
		return nil, err
	}
	cfg := &Config{Source: src}
	isConfigJSON := false
	for _, f := range fields {
		switch f.name {
		case "auths", "credHelpers", "credsStore":
			isConfigJSON = true
		}
	}
	if !isConfigJSON && len(fields) > 0 && looksLikeDockercfg(fields) {
		return parseAuthsObject(data, 0, src, cfg)
	}
	for _, f := range fields {
		switch f.name {
		case "auths":
			if _, err := parseAuthsObject(data, f.offset, src, cfg); err != nil {
				return nil, err
			}
		case "credHelpers":
			helpers, err := objectFieldsAt(data, f.offset, src)
			if err != nil {
				return nil, err
			}
			for _, h := range helpers {
				var name string
				if err := json.Unmarshal(h.raw, &name); err != nil || name == "" {
					return nil, keyError(src, "credHelpers."+h.name, errors.New("helper name must be a non-empty string"))
				}
				cfg.Entries = append(cfg.Entries, Entry{Key: h.name, Source: src, Helper: name})
			}
		case "credsStore":
			if err := json.Unmarshal(f.raw, &cfg.CredsStore); err != nil {
				return nil, keyError(src, "credsStore", errors.New("must be a string"))
			}
		}
	}
	if cfg.CredsStore != "" || hasHelpers(cfg) {
		// With a credential store, docker writes empty placeholders in "auths"; the
		// credential lives in the store.
		kept := cfg.Entries[:0]
		for _, e := range cfg.Entries {
			if e.Helper != "" || !e.Credential.Anonymous() {
				kept = append(kept, e)
			}
		}
		cfg.Entries = kept
	}
	return cfg, nil
}

// ParseDockercfg reads a legacy .dockercfg: registry keys at the top level.
func ParseDockercfg(data []byte, src Source) (*Config, error) {
	if _, err := objectFields(data, src); err != nil {
		return nil, err
	}
	return parseAuthsObject(data, 0, src, &Config{Source: src})
}

// ParseDockerConfigJSON reads the "auths" form only, as the kubelet reads a
// kubernetes.io/dockerconfigjson secret: helpers are not honoured.
func ParseDockerConfigJSON(data []byte, src Source) (*Config, error) {
	cfg, err := ParseConfig(data, src)
	if err != nil {
		return nil, err
	}
	return withoutHelpers(cfg), nil
}

func withoutHelpers(cfg *Config) *Config {
	kept := cfg.Entries[:0]
	for _, e := range cfg.Entries {
		if e.Helper != "" {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s: credHelpers entry %q ignored: credential helpers are honoured only in local files", cfg.Source, e.Key))
			continue
		}
		kept = append(kept, e)
	}
	cfg.Entries = kept
	if cfg.CredsStore != "" {
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s: credsStore ignored: credential helpers are honoured only in local files", cfg.Source))
		cfg.CredsStore = ""
	}
	return cfg
}

func hasHelpers(cfg *Config) bool {
	for _, e := range cfg.Entries {
		if e.Helper != "" {
			return true
		}
	}
	return false
}

// looksLikeDockercfg: every top-level value is an object, as in {"quay.io": {...}}.
func looksLikeDockercfg(fields []field) bool {
	for _, f := range fields {
		if len(f.raw) == 0 || f.raw[0] != '{' {
			return false
		}
	}
	return true
}

func parseAuthsObject(data []byte, offset int64, src Source, cfg *Config) (*Config, error) {
	entries, err := objectFieldsAt(data, offset, src)
	if err != nil {
		return nil, err
	}
	for _, f := range entries {
		var a authEntry
		if err := decodeStrict(f.raw, &a); err != nil {
			return nil, keyError(src, f.name, err)
		}
		cred, err := a.credential()
		if err != nil {
			return nil, keyError(src, f.name, err)
		}
		cfg.Entries = append(cfg.Entries, Entry{Key: f.name, Credential: cred, Source: src})
	}
	return cfg, nil
}

func (a authEntry) credential() (Credential, error) {
	c := Credential{
		Username:      a.Username,
		Password:      a.Password,
		Email:         a.Email,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if a.Auth == "" {
		return c, nil
	}
	user, pass, err := DecodeAuth(a.Auth)
	if err != nil {
		return Credential{}, err
	}
	// As docker and the kubelet do, "auth" wins over username and password.
	c.Username, c.Password = user, pass
	return c, nil
}

// DecodeAuth decodes an "auth" value, base64 of username:password, with or without
// padding. Errors never include the value.
func DecodeAuth(auth string) (username, password string, err error) {
	auth = strings.TrimSpace(auth)
	decoded, err := base64.StdEncoding.DecodeString(auth)
	if err != nil {
		decoded, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(auth, "="))
	}
	if err != nil {
		return "", "", fmt.Errorf("%w: not base64", ErrBadAuth)
	}
	user, pass, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", fmt.Errorf("%w: no colon in the decoded value", ErrBadAuth)
	}
	return user, pass, nil
}

// EncodeAuth is the "auth" value docker and podman write: padded base64 of user:password.
func EncodeAuth(username, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(username + ":" + password))
}

// field is one member of a JSON object, in document order.
type field struct {
	name   string
	raw    json.RawMessage
	offset int64 // offset of the value in the whole document
}

func objectFields(data []byte, src Source) ([]field, error) {
	if err := checkSyntax(data, src); err != nil {
		return nil, err
	}
	return objectFieldsAt(data, 0, src)
}

// objectFieldsAt lists the members of the object starting at offset, refusing a
// value that is not an object and a key that appears twice.
func objectFieldsAt(data []byte, offset int64, src Source) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(data[offset:]))
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(src, offset, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &ParseError{Source: src, Offset: -1, Err: fmt.Errorf("expected a JSON object at byte %d", offset)}
	}
	var fields []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(src, offset, err)
		}
		name := tok.(string)
		if seen[name] {
			return nil, keyError(src, name, ErrDuplicateKey)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntaxError(src, offset, err)
		}
		valueOffset := offset + dec.InputOffset() - int64(len(raw))
		fields = append(fields, field{name: name, raw: raw, offset: valueOffset})
	}
	return fields, nil
}

// checkSyntax reports invalid JSON with its byte offset, and a duplicate key in any
// object of the document.
func checkSyntax(data []byte, src Source) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &ParseError{Source: src, Offset: -1, Err: errors.New("empty document")}
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return syntaxError(src, 0, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	return walkDuplicates(dec, src, "")
}

func walkDuplicates(dec *json.Decoder, src Source, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(src, 0, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return syntaxError(src, 0, err)
			}
			key := keyTok.(string)
			if seen[key] {
				return keyError(src, joinPath(path, key), ErrDuplicateKey)
			}
			seen[key] = true
			if err := walkDuplicates(dec, src, joinPath(path, key)); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := walkDuplicates(dec, src, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // closing delimiter
	if err != nil {
		return syntaxError(src, 0, err)
	}
	return nil
}

// joinPath names a nested key; registry keys contain dots, so the innermost key is
// kept as written when the path is one level deep under "auths".
func joinPath(path, key string) string {
	if path == "" || path == "auths" {
		return key
	}
	return path + "." + key
}

func syntaxError(src Source, base int64, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// SyntaxError.Offset counts the bytes read, the bad one included.
		return &ParseError{Source: src, Offset: base + max(se.Offset-1, 0), Err: errors.New(se.Error())}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &ParseError{Source: src, Offset: -1, Err: fmt.Errorf("at byte %d: %s is a JSON %s, want %s", base+te.Offset, orRoot(te.Field), te.Value, te.Type)}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &ParseError{Source: src, Offset: -1, Err: errors.New("unexpected end of JSON")}
	}
	return &ParseError{Source: src, Offset: -1, Err: err}
}

func orRoot(field string) string {
	if field == "" {
		return "the document"
	}
	return field
}

// decodeStrict decodes one auth entry; its value never appears in the error.
func decodeStrict(raw json.RawMessage, v *authEntry) error {
	if len(raw) == 0 || raw[0] != '{' {
		return errors.New("must be a JSON object")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("field %q must be a %s", te.Field, te.Type)
		}
		return errors.New("not a valid entry")
	}
	return nil
}
