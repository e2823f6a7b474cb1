package credentials

import (
	"errors"
	"fmt"
	"strings"
)

// ParseError is a credentials source that cannot be used. It names the source and,
// where there is one, the key and the byte offset; it never contains a credential.
type ParseError struct {
	Source Source
	// Key is the registry key (or top-level field) at fault, if any.
	Key string
	// Offset is the byte offset of a JSON syntax error, or -1.
	Offset int64
	Err    error
}

func (e *ParseError) Error() string {
	switch {
	case e.Offset >= 0:
		return fmt.Sprintf("%s: invalid JSON at byte %d: %v", e.Source, e.Offset, e.Err)
	case e.Key != "":
		return fmt.Sprintf("%s: entry %q: %v", e.Source, e.Key, e.Err)
	default:
		return fmt.Sprintf("%s: %v", e.Source, e.Err)
	}
}

func (e *ParseError) Unwrap() error { return e.Err }

// Errors a caller may test for with errors.Is.
var (
	ErrDuplicateKey = errors.New("the same key appears twice in one JSON object")
	ErrBadAuth      = errors.New(`"auth" must be base64 of username:password`)
	ErrWrongType    = errors.New("secret type does not hold registry credentials")
	ErrMissingKey   = errors.New("secret has no data under the key its type requires")
)

// keyError is an error about one key; a key is shown without any user:password@.
func keyError(src Source, key string, err error) *ParseError {
	return &ParseError{Source: src, Key: redactKey(key), Offset: -1, Err: err}
}

// duplicateError names where a key appears twice: a registry key says so, any other
// key is named by its JSON path.
func duplicateError(src Source, path []string, registries bool) *ParseError {
	key := path[len(path)-1]
	if registries {
		return keyError(src, key, fmt.Errorf("%w: the same registry key twice, which neither Docker nor Podman can hold; keep one", ErrDuplicateKey))
	}
	return &ParseError{Source: src, Offset: -1, Err: fmt.Errorf("%w: %s", ErrDuplicateKey, jsonPath(path))}
}

// jsonPath writes path as JSONPath, keys with dots in brackets: $.auths["quay.io"].auth.
func jsonPath(path []string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, p := range path {
		if p != "" && !strings.ContainsAny(p, ".[]\"") && p[0] != '[' {
			b.WriteString("." + p)
		} else if strings.HasPrefix(p, "[") && strings.HasSuffix(p, "]") {
			b.WriteString(p)
		} else {
			fmt.Fprintf(&b, "[%q]", redactKey(p))
		}
	}
	return b.String()
}
