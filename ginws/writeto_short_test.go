package ginws_test

import (
	"io"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// halfWriter takes half of what it is given and reports no error, which
// breaks io.Writer's contract in the way io.Copy must catch.
type halfWriter struct{}

func (halfWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

// Conn.WriteTo reports a short Write as io.ErrShortWrite, as io.Copy
// does, with the count of bytes the writer took.
func TestWriteToShortWrite(t *testing.T) {
	for _, object := range []bool{false, true} {
		name := "bytes"
		if object {
			name = "object"
		}
		t.Run(name, func(t *testing.T) {
			type result struct {
				n   int64
				err error
			}
			got := make(chan result, 1)
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
				s.Handle(r, "/copy", func(conn *ginws.Conn, _ *gin.Context) error {
					n, err := io.Copy(halfWriter{}, conn) // Conn.WriteTo
					got <- result{n, err}
					return err
				}, ginws.ObjectMode(object))
			})
			c := dial(t, ts.wsURL("/copy"), nil)
			c.send(ws.OpBinary, []byte("abcdefgh"))
			var r result
			select {
			case r = <-got:
			case <-testCtx(t).Done():
				t.Fatal("io.Copy did not return")
			}
			require.ErrorIs(t, r.err, io.ErrShortWrite)
			assert.Equal(t, int64(4), r.n, "bytes the writer took")
		})
	}
}
