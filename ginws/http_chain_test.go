package ginws_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"

	"github.com/ginws/ginws/ginws"
)

// etagWriter buffers the body so that etag can set the header from it.
type etagWriter struct {
	gin.ResponseWriter
	buf bytes.Buffer
}

func (w *etagWriter) Write(p []byte) (int, error)       { return w.buf.Write(p) }
func (w *etagWriter) WriteString(s string) (int, error) { return w.buf.WriteString(s) }

// etag is ordinary gin middleware: it runs the rest of the chain with
// c.Next() and then looks at what it produced.
func etag(c *gin.Context) {
	w := &etagWriter{ResponseWriter: c.Writer}
	c.Writer = w
	c.Next()
	c.Writer = w.ResponseWriter
	sum := sha256.Sum256(w.buf.Bytes())
	c.Header("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	_, _ = c.Writer.Write(w.buf.Bytes())
}

// The handlers given to HTTP are gin handlers: middleware among them
// wraps the ones after it with c.Next(), as on any gin route. Here the
// same chain on a plain route and on the plain side of a WebSocket route.
func TestHTTPHandlersChain(t *testing.T) {
	snapshot := func(c *gin.Context) { c.String(http.StatusOK, "latest snapshot") }
	r := gin.New()
	r.GET("/plain", etag, snapshot)
	ginws.New().Handle(r, "/feed", func(conn *ginws.Conn, c *gin.Context) error { return nil },
		ginws.HTTP(etag, snapshot))

	want := httptest.NewRecorder()
	r.ServeHTTP(want, httptest.NewRequest(http.MethodGet, "/plain", nil))
	got := httptest.NewRecorder()
	r.ServeHTTP(got, httptest.NewRequest(http.MethodGet, "/feed", nil))
	assert.Equal(t, "latest snapshot", want.Body.String())
	assert.Equal(t, want.Body.String(), got.Body.String())
	assert.Equal(t, want.Header().Get("ETag"), got.Header().Get("ETag"))
}
