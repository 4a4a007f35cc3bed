package ginws_test

import (
	"testing"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// TestCloseWithReasonNotUTF8: a close frame's reason must be UTF-8 (RFC
// 6455 section 5.5.1; ginws itself fails a peer's with 1007). CloseWith
// cuts a long reason on a rune boundary, but passes bytes that are not
// UTF-8 as they are: the peer then gets a frame it must fail (Node's ws
// reports "invalid UTF-8 sequence", 1006). The example server's
// /close?reason=%FF sends one for anybody who asks.
func TestCloseWithReasonNotUTF8(t *testing.T) {
	for _, reason := range []string{"bad \xff reason", "\xe2\x9c", string(make([]byte, 200)) + "\xff"} {
		ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
			s.Handle(r, "/close", func(conn *ginws.Conn, c *gin.Context) error {
				return conn.CloseWith(4003, reason)
			})
		})
		c := dial(t, ts.wsURL("/close"), nil)
		f := c.readFrame()
		require.Equal(t, ws.OpClose, f.Header.OpCode)
		require.GreaterOrEqual(t, len(f.Payload), 2)
		assert.LessOrEqual(t, len(f.Payload), 125)
		assert.True(t, utf8.Valid(f.Payload[2:]), "close reason sent for %q is not UTF-8: %q", reason, f.Payload[2:])
		c.send(ws.OpClose, f.Payload[:2])
		c.expectEOF()
	}
}
