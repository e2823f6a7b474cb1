package credentials

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Flavor selects whose file format SetAuth writes.
type Flavor int

const (
	// Docker writes entries as the docker CLI does: "auth", then "email" if any.
	Docker Flavor = iota
	// Podman writes entries as containers/image does: "auth" only.
	Podman
)

// fileEntry is an auths entry in the field order docker and podman write.
type fileEntry struct {
	Auth          string `json:"auth,omitempty"`
	Email         string `json:"email,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// SetAuth returns existing (a config.json or auth.json, or empty for a new file) with
// the entry for key set to c, as docker login or podman login would write it:
// tab-indented, no trailing newline. Other top-level fields and other entries keep
// their order and content.
func SetAuth(existing []byte, key string, c Credential, flavor Flavor) ([]byte, error) {
	src := Source{Kind: "file", Name: "(being written)"}
	if !utf8.ValidString(key) {
		return nil, keyError(src, key, errors.New("registry key is not valid UTF-8"))
	}
	if _, err := NormalizeKey(key); err != nil {
		return nil, keyError(src, key, err)
	}
	var top []field
	if len(bytes.TrimSpace(existing)) > 0 {
		var err error
		if top, err = objectFields(existing, src); err != nil {
			return nil, err
		}
	}
	entry := fileEntry{IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken}
	if c.Username != "" || c.Password != "" {
		entry.Auth = EncodeAuth(c.Username, c.Password)
	}
	if flavor == Docker {
		entry.Email = c.Email
	} else {
		entry.RegistryToken = ""
	}
	value, err := json.Marshal(entry)
	if err != nil {
		return nil, err
	}

	var auths []field
	authsAt := -1
	for i, f := range top {
		if f.name == "auths" {
			authsAt = i
			if auths, err = objectFieldsAt(existing, f.offset, src); err != nil {
				return nil, err
			}
		}
	}
	replaced := false
	for i := range auths {
		if auths[i].name == key {
			auths[i].raw, replaced = value, true
		}
	}
	if !replaced {
		auths = append(auths, field{name: key, raw: value})
	}
	authsRaw, err := marshalObject(auths)
	if err != nil {
		return nil, err
	}
	if authsAt >= 0 {
		top[authsAt].raw = authsRaw
	} else {
		top = append([]field{{name: "auths", raw: authsRaw}}, top...)
	}
	compact, err := marshalObject(top)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "\t"); err != nil {
		return nil, fmt.Errorf("formatting credentials file: %w", err)
	}
	return out.Bytes(), nil
}

// marshalObject writes fields as a compact JSON object in their order.
func marshalObject(fields []field) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		name, err := json.Marshal(f.name)
		if err != nil {
			return nil, err
		}
		b.Write(name)
		b.WriteByte(':')
		var compact bytes.Buffer
		if err := json.Compact(&compact, f.raw); err != nil {
			return nil, err
		}
		b.Write(compact.Bytes())
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
