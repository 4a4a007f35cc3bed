package ginws_test

import (
	"net"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// TestStalledFrameHeaderCostsNoClaimedBuffer: a hostile client sends the
// header of a frame that claims 1 MiB, one byte of its payload, and
// nothing more. The README promises that memory follows the bytes that
// arrive, never the length a frame header claims: a connection stalled
// like that must cost about what an idle one costs, not a buffer sized
// from the claimed length.
func TestStalledFrameHeaderCostsNoClaimedBuffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    ginws.Handler
	}{
		{"ReadMessage", echoHandler},
		{"io.Copy of the stream", copyHandler}, // Conn.WriteTo forwards in chunks
	} {
		t.Run(tc.name, func(t *testing.T) { stalledFrameHeader(t, tc.h) })
	}
}

func stalledFrameHeader(t *testing.T, h ginws.Handler) {
	const n = 200
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", h)
	})
	conns := make([]*client, n)
	for i := range conns {
		conns[i] = dial(t, ts.wsURL("/echo"), nil)
	}
	require.Eventually(t, func() bool { return ts.ws.Len() == n }, 10*time.Second, 10*time.Millisecond)
	// Idle connections first: what each costs before the attack.
	time.Sleep(100 * time.Millisecond)
	before := heapInUse()

	hdr := maskedFrame(false, ws.OpBinary, make([]byte, 1<<20))
	hdr = hdr[:len(hdr)-(1<<20)+1] // header, mask and one payload byte
	for _, c := range conns {
		_, err := c.nc.Write(hdr)
		require.NoError(t, err)
	}
	// The server reads the byte and waits for the rest.
	time.Sleep(500 * time.Millisecond)
	per := heapGrowthPerConn(before, n, 8<<10)
	t.Logf("heap per stalled connection: %.0f bytes", per)
	require.Less(t, per, float64(8<<10), "a connection stalled in a frame that claims 1 MiB, after 15 bytes, holds a buffer sized from the claim")
	for _, c := range conns {
		_ = c.nc.(*net.TCPConn).Close()
	}
}

// TestBroadcastToSteadySlowReader: one broadcast of 3 MiB, well inside
// the default send queue (1024 messages, 16 MiB: "so that a burst of
// messages of a few MiB to a peer on a slow link fits"), to a peer on a
// slow link that reads steadily, about 320 KB/s. It must get the whole
// message; it is not behind by more than its queue allows.
func TestBroadcastToSteadySlowReader(t *testing.T) {
	const size = 3 << 20
	s := ginws.New()
	r := gin.New()
	ended := make(chan error, 1)
	s.Handle(r, "/room", func(conn *ginws.Conn, c *gin.Context) error {
		_, _, err := conn.ReadMessage(c) // until the end
		ended <- err
		return err
	})
	url := smallBufferServer(t, r, "/room")
	shutdownAtEnd(t, s)
	c := dialSlowReader(t, url, 16<<10)
	require.Eventually(t, func() bool { return s.Len() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 1, s.Broadcast(ginws.ToAll(), ginws.MessageBinary, make([]byte, size)))

	require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(60*time.Second)))
	h, err := ws.ReadHeader(c.r)
	require.NoError(t, err)
	require.Equal(t, int64(size), h.Length)
	buf := make([]byte, 32<<10)
	var got int64
	start := time.Now()
	for got < h.Length {
		n, err := c.r.Read(buf[:min(int64(len(buf)), h.Length-got)])
		got += int64(n)
		if err != nil {
			select {
			case herr := <-ended:
				t.Fatalf("dropped after %d of %d bytes, %v, reading steadily: %v (handler: %v)", got, h.Length, time.Since(start), err, herr)
			case <-time.After(5 * time.Second):
				t.Fatalf("dropped after %d of %d bytes, %v, reading steadily: %v", got, h.Length, time.Since(start), err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.sendClose(ws.StatusNormalClosure, "")
	c.expectClose()
}
