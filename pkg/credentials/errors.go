package credentials

import (
	"errors"
	"fmt"
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
	ErrDuplicateKey = errors.New("the same key appears twice in one JSON object; neither Docker nor Podman support two entries for the exact same registry path")
	ErrBadAuth      = errors.New(`"auth" must be base64 of username:password`)
	ErrWrongType    = errors.New("secret type does not hold registry credentials")
	ErrMissingKey   = errors.New("secret has no data under the key its type requires")
)

func keyError(src Source, key string, err error) *ParseError {
	return &ParseError{Source: src, Key: key, Offset: -1, Err: err}
}
