package credentials

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
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
		if configJSONFields[f.name] {
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

// ParseDockercfg reads a legacy .dockercfg — registry keys at the top level — as the
// kubelet reads a kubernetes.io/dockercfg secret.
func ParseDockercfg(data []byte, src Source) (*Config, error) {
	return parseKubelet(data, src, true)
}

// ParseDockerConfigJSON reads the "auths" form as the kubelet reads a
// kubernetes.io/dockerconfigjson secret: credential helpers are not honoured (a
// warning says so), nor is anything but username, password, email and auth.
func ParseDockerConfigJSON(data []byte, src Source) (*Config, error) {
	cfg, err := parseKubelet(data, src, false)
	if err != nil {
		return nil, err
	}
	if fields, err := objectFields(data, src); err == nil {
		for _, f := range fields {
			if f.name == "credHelpers" || f.name == "credsStore" {
				cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s: %s ignored: credential helpers are honoured only in a node's local file", src, f.name))
			}
		}
	}
	return cfg, nil
}

// ParseNodeConfig reads a node's config.json as the kubelet reads it, and goes
// further (DifferenceCredentialHelpers): its credHelpers and credsStore are run, and
// the empty entries docker writes beside a store are left to the store.
func ParseNodeConfig(data []byte, src Source) (*Config, error) {
	cfg, err := parseKubelet(data, src, false)
	if err != nil {
		return nil, err
	}
	var helpers struct {
		CredHelpers map[string]string `json:"credHelpers"`
		CredsStore  string            `json:"credsStore"`
	}
	if err := json.Unmarshal(data, &helpers); err != nil {
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s: credHelpers and credsStore ignored: %v", src, kubeletError(src, err)))
		return cfg, nil
	}
	if helpers.CredsStore == "" && len(helpers.CredHelpers) == 0 {
		return cfg, nil
	}
	cfg.Entries = slices.DeleteFunc(cfg.Entries, func(e Entry) bool { return e.Credential.Anonymous() })
	keys := make([]string, 0, len(helpers.CredHelpers))
	for k := range helpers.CredHelpers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if helpers.CredHelpers[k] != "" {
			cfg.Entries = append(cfg.Entries, Entry{Key: k, Source: src, Helper: helpers.CredHelpers[k]})
		}
	}
	cfg.CredsStore = helpers.CredsStore
	return cfg, nil
}

func hasHelpers(cfg *Config) bool {
	for _, e := range cfg.Entries {
		if e.Helper != "" {
			return true
		}
	}
	return false
}

// configJSONFields are the top-level fields of Docker's config.json: a document with
// any of them is a config.json, never a legacy .dockercfg whose keys are registries.
var configJSONFields = map[string]bool{
	"auths": true, "credHelpers": true, "credsStore": true, "proxies": true, "HttpHeaders": true,
	"psFormat": true, "imagesFormat": true, "networksFormat": true, "pluginsFormat": true, "volumesFormat": true,
	"statsFormat": true, "detachKeys": true, "currentContext": true, "plugins": true, "experimental": true,
	"serviceInspectFormat": true, "servicesFormat": true, "secretFormat": true, "configFormat": true,
	"nodesFormat": true, "aliases": true, "features": true, "credentialSpecs": true, "kubernetes": true,
	"stackOrchestrator": true,
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
	dec.UseNumber()
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
			return nil, duplicateError(src, []string{name}, true)
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
	// Numbers are kept as written: a number too large for a float is the syntax
	// check's business only where a field wants a number.
	var v any
	syntax := json.NewDecoder(bytes.NewReader(data))
	syntax.UseNumber()
	if err := syntax.Decode(&v); err != nil {
		return syntaxError(src, 0, err)
	}
	if syntax.More() {
		return &ParseError{Source: src, Offset: syntax.InputOffset(), Err: errors.New("more than one JSON value")}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return walkDuplicates(dec, src, nil, legacyLayout(v))
}

// legacyLayout reports whether a document holds registry keys at its top level (a
// .dockercfg) rather than under "auths".
func legacyLayout(v any) bool {
	top, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for k := range top {
		if configJSONFields[k] {
			return false
		}
	}
	return true
}

// walkDuplicates refuses a key that appears twice in any object of the document;
// path is where the decoder is, and legacy says the top-level keys are registries.
func walkDuplicates(dec *json.Decoder, src Source, path []string, legacy bool) error {
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
		registries := len(path) == 0 && legacy || len(path) == 1 && strings.EqualFold(path[0], "auths")
		seen := map[string]bool{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return syntaxError(src, 0, err)
			}
			key := keyTok.(string)
			inner := append(slices.Clone(path), key)
			if seen[key] {
				return duplicateError(src, inner, registries)
			}
			seen[key] = true
			if err := walkDuplicates(dec, src, inner, legacy); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := walkDuplicates(dec, src, append(slices.Clone(path), fmt.Sprintf("[%d]", i)), legacy); err != nil {
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

func syntaxError(src Source, base int64, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// SyntaxError.Offset counts the bytes read, the bad one included.
		return &ParseError{Source: src, Offset: base + max(se.Offset-1, 0), Err: errors.New(se.Error())}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// te.Value may hold the value itself ("number 1e999"): only its kind is said.
		kind, _, _ := strings.Cut(te.Value, " ")
		return &ParseError{Source: src, Offset: -1, Err: fmt.Errorf("at byte %d: %s is a JSON %s, want %s", base+te.Offset, orRoot(te.Field), kind, te.Type)}
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
