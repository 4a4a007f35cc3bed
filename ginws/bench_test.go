package ginws_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"

	"github.com/ginws/ginws/ginws"
)

// BenchmarkEcho measures one round trip per op over loopback: the client
// writes a prebuilt masked frame and reads the echo with a reader that
// allocates nothing, so allocs/op are the server's.
func BenchmarkEcho(b *testing.B) {
	ts := newServer(b, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/message", echoHandler)
		s.Handle(r, "/stream", copyHandler)
		s.Handle(r, "/object", copyHandler, ginws.ObjectMode(true))
		s.Handle(r, "/events", eventEcho)
	})
	for _, route := range []string{"message", "stream", "object", "events"} {
		for _, size := range []int{64, 1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%d", route, size), func(b *testing.B) {
				c := dial(b, ts.wsURL("/"+route), nil)
				out := maskedFrame(true, ws.OpBinary, payload(size, false))
				in := make([]byte, size)
				var hdr [10]byte
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := c.nc.Write(out); err != nil {
						b.Fatal(err)
					}
					for got := 0; got < size; {
						n, err := readFramePayload(c.r, hdr[:], in[got:])
						if err != nil {
							b.Fatal(err)
						}
						got += n
					}
				}
				b.StopTimer()
				c.sendClose(ws.StatusNormalClosure, "")
				c.expectClose()
			})
		}
	}
}

// readFramePayload reads one unmasked server frame into p.
func readFramePayload(r io.Reader, hdr, p []byte) (int, error) {
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return 0, err
	}
	n := int(hdr[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			return 0, err
		}
		n = int(binary.BigEndian.Uint16(hdr))
	case 127:
		if _, err := io.ReadFull(r, hdr[:8]); err != nil {
			return 0, err
		}
		n = int(binary.BigEndian.Uint64(hdr))
	}
	if n > len(p) {
		return 0, fmt.Errorf("frame of %d bytes, %d expected at most", n, len(p))
	}
	return io.ReadFull(r, p[:n])
}
