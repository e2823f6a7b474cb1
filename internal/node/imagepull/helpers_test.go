package imagepull

import (
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
)

func authConfig(user, pass string) authn.AuthConfig {
	return authn.AuthConfig{Username: user, Password: pass}
}

// corrupting flips the first byte of every body it writes.
type corrupting struct {
	http.ResponseWriter
	done bool
}

func (c *corrupting) Write(b []byte) (int, error) {
	if !c.done && len(b) > 0 {
		c.done = true
		b = append([]byte{b[0] ^ 0xff}, b[1:]...)
	}
	return c.ResponseWriter.Write(b)
}
