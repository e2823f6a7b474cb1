package credentials

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The kubelet's reading of a pull secret (k8s.io/kubernetes pkg/credentialprovider,
// DockerConfigJSON and DockerConfig), reproduced with the same library and the same
// shapes, so that every quirk is the kubelet's: "auths" found in any letter case and
// merged when it appears more than once, a null entry an empty credential, fields it
// has no place for (identitytoken, registrytoken, credsStore, credHelpers, …)
// ignored, "auth" decoded as it decodes it. Only the errors are pullgate's: they name
// the source, the entry and the field, never a value.

// kubeletConfigJSON is credentialprovider.DockerConfigJSON.
type kubeletConfigJSON struct {
	Auths       kubeletAuths      `json:"auths"`
	HTTPHeaders map[string]string `json:"HttpHeaders,omitempty"`
}

// kubeletAuths is credentialprovider.DockerConfig: registry key → entry.
type kubeletAuths map[string]kubeletEntry

func (a *kubeletAuths) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if raw == nil { // null: the kubelet's map is reset
		*a = nil
		return nil
	}
	if *a == nil {
		*a = kubeletAuths{}
	}
	for key, value := range raw {
		var e kubeletEntry
		if err := json.Unmarshal(value, &e); err != nil {
			return &entryError{key: key, err: err}
		}
		(*a)[key] = e
	}
	return nil
}

// kubeletEntry is credentialprovider.DockerConfigEntry.
type kubeletEntry struct {
	Username, Password, Email string
}

func (e *kubeletEntry) UnmarshalJSON(data []byte) error {
	var tmp struct {
		Username string `json:"username,omitempty"`
		Password string `json:"password,omitempty"`
		Email    string `json:"email,omitempty"`
		Auth     string `json:"auth,omitempty"`
	}
	if err := json.Unmarshal(data, &tmp); err != nil {
		return err
	}
	e.Username, e.Password, e.Email = tmp.Username, tmp.Password, tmp.Email
	if tmp.Auth == "" {
		return nil
	}
	var err error
	e.Username, e.Password, err = decodeKubeletAuth(tmp.Auth)
	return err
}

// decodeKubeletAuth is the kubelet's decodeDockerConfigFieldAuth: padded base64 when
// the value (trimmed) ends in "=", unpadded otherwise, of username:password. A value
// with spaces, or with padding that is not exactly right, is refused.
func decodeKubeletAuth(field string) (string, string, error) {
	var decoded []byte
	var err error
	if strings.HasSuffix(strings.TrimSpace(field), "=") {
		decoded, err = base64.StdEncoding.DecodeString(field)
	} else {
		decoded, err = base64.RawStdEncoding.DecodeString(field)
	}
	if err != nil {
		return "", "", fmt.Errorf("%w: not base64 as the kubelet reads it (no spaces; padding exactly right, or none)", ErrBadAuth)
	}
	user, pass, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", fmt.Errorf("%w: no colon in the decoded value", ErrBadAuth)
	}
	return user, pass, nil
}

// entryError is a registry entry the kubelet cannot read.
type entryError struct {
	key string
	err error
}

func (e *entryError) Error() string { return e.err.Error() }
func (e *entryError) Unwrap() error { return e.err }

// parseKubelet reads data as the kubelet reads a secret of the given form: the
// "auths" form (kubernetes.io/dockerconfigjson, the node's config.json) or the legacy
// form, registry keys at the top level (kubernetes.io/dockercfg).
func parseKubelet(data []byte, src Source, legacy bool) (*Config, error) {
	if err := checkSyntax(data, src); err != nil {
		return nil, err
	}
	var auths kubeletAuths
	var err error
	if legacy {
		err = json.Unmarshal(data, &auths)
	} else {
		var cfg kubeletConfigJSON
		err = json.Unmarshal(data, &cfg)
		auths = cfg.Auths
	}
	if err != nil {
		return nil, kubeletError(src, err)
	}
	cfg := &Config{Source: src}
	keys := make([]string, 0, len(auths))
	for key := range auths {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		e := auths[key]
		cfg.Entries = append(cfg.Entries, Entry{Key: key, Source: src,
			Credential: Credential{Username: e.Username, Password: e.Password, Email: e.Email}})
	}
	if !legacy && auths == nil {
		cfg.Warnings = append(cfg.Warnings, noAuthsWarning(data, src))
	}
	return cfg, nil
}

// noAuthsWarning says that a document in the "auths" form holds no "auths", and what
// it may be instead.
func noAuthsWarning(data []byte, src Source) string {
	msg := fmt.Sprintf("%s has no \"auths\": the kubelet reads no credentials from it", src)
	if fields, err := objectFields(data, src); err == nil && len(fields) > 0 && looksLikeDockercfg(fields) {
		msg += "; it looks like a legacy .dockercfg, which belongs in a secret of type kubernetes.io/dockercfg under the key .dockercfg"
	}
	return msg
}

// kubeletError names the entry and field of an error of the kubelet's reading,
// never a value.
func kubeletError(src Source, err error) error {
	key := ""
	var ee *entryError
	if errors.As(err, &ee) {
		key, err = ee.key, ee.err
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		what := "the document"
		if te.Field != "" {
			what = "field " + te.Field
		}
		err = fmt.Errorf("%s must be a JSON %s, as the kubelet reads it", what, jsonKind(te.Type.Kind().String()))
	}
	if key != "" {
		return keyError(src, redactKey(key), err)
	}
	return &ParseError{Source: src, Offset: -1, Err: err}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "map", "struct":
		return "object"
	default:
		return goKind
	}
}
