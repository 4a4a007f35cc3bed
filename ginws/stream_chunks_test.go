package ginws_test

import (
	"io"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// TestStreamForwardsPartOfLongFrame: io.Copy(conn, conn) on the byte
// stream forwards a long frame's bytes as they arrive. A peer that has
// sent the first 4 KiB of a frame claiming 8 KiB, and waits for them to
// come back before it sends the rest (an interactive stream in one long
// frame, or a proxy that relays a frame as it comes), must get them: the
// server has them in hand.
func TestStreamForwardsPartOfLongFrame(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/stream", copyHandler)
	})
	c := dial(t, ts.wsURL("/stream"), nil)

	// A small message first, echoed: the server is then back waiting for
	// the next frame, with nothing buffered.
	c.send(ws.OpBinary, []byte("a"))
	_, p := c.readMessage()
	require.Equal(t, []byte("a"), p)

	payload := make([]byte, 8192)
	for i := range payload {
		payload[i] = byte(i)
	}
	frame := maskedFrame(true, ws.OpBinary, payload)
	hdr := len(frame) - len(payload)
	_, err := c.nc.Write(frame[:hdr]) // the header alone
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond) // let the server take it in
	_, err = c.nc.Write(frame[hdr : hdr+4096])
	require.NoError(t, err)

	// Everything sent so far comes back, whatever the chunking.
	require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	var got []byte
	for len(got) < 4096 {
		h, err := ws.ReadHeader(c.r)
		require.NoError(t, err, "after %d of the 4096 bytes the server has", len(got))
		b := make([]byte, h.Length)
		_, err = io.ReadFull(c.r, b)
		require.NoError(t, err)
		got = append(got, b...)
	}
	require.Equal(t, payload[:4096], got)

	_, err = c.nc.Write(frame[hdr+4096:])
	require.NoError(t, err)
	c.sendClose(ws.StatusNormalClosure, "")
	c.expectClose()
}
