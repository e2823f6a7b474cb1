package imagepull

import (
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
)

func authConfig(user, pass string) authn.AuthConfig {
	return authn.AuthConfig{Username: user, Password: pass}
}

// hijackAfter sends limit bytes of the body, then resets the connection.
type hijackAfter struct {
	http.ResponseWriter
	limit, sent int
}

func (h *hijackAfter) Write(b []byte) (int, error) {
	if h.sent+len(b) > h.limit {
		b = b[:h.limit-h.sent]
		n, _ := h.ResponseWriter.Write(b)
		h.sent += n
		h.ResponseWriter.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(h.ResponseWriter).Hijack()
		if err == nil {
			conn.Close()
		}
		panic(http.ErrAbortHandler)
	}
	n, err := h.ResponseWriter.Write(b)
	h.sent += n
	return n, err
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
