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
	const n = 200
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", echoHandler)
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
