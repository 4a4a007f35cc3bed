package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
)

// gobwas is the floor: the HTTP upgrade of gobwas/ws, then a hand-written
// frame loop on the raw hijacked connection. Each data frame is unmasked in
// place and written back with its opcode and FIN bit, its header laid just
// before the payload in the same buffer so one write sends the frame. It does
// no UTF-8 check and no reassembly (a fragmented message is echoed frame by
// frame, which is still the same message), so no library can do less work.
func init() {
	register("gobwas", "github.com/gobwas/ws", func(r *gin.Engine) {
		up := ws.HTTPUpgrader{} // no origin check, no extensions
		r.GET("/echo", func(c *gin.Context) {
			conn, rw, _, err := up.Upgrade(c.Request, c.Writer)
			if err != nil {
				return
			}
			defer conn.Close()
			var br *bufio.Reader
			if rw != nil {
				br = rw.Reader
			} else {
				br = bufio.NewReaderSize(conn, 4096)
			}
			gobwasLoop(conn, br)
		})
	})
}

// frameHead is room for the largest server header (no mask): 2+8 bytes.
const frameHead = 10

func gobwasLoop(conn net.Conn, br *bufio.Reader) {
	hb := make([]byte, 0, ws.MaxHeaderSize)
	var buf []byte  // allocated at the first frame: an idle connection has none
	var total int64 // bytes of the message being received, for the limit
	for {
		h, err := ws.ReadHeaderBuffer(br, hb)
		if err != nil {
			return
		}
		if !h.Masked || h.Rsv != 0 {
			writeClose(conn, ws.StatusProtocolError)
			return
		}
		if h.OpCode.IsControl() && (h.Length > 125 || !h.Fin) {
			writeClose(conn, ws.StatusProtocolError)
			return
		}
		if h.OpCode.IsData() || h.OpCode == ws.OpContinuation {
			if h.OpCode.IsData() {
				total = 0
			}
			total += h.Length
			if total > maxMessageSize {
				writeClose(conn, ws.StatusMessageTooBig)
				return
			}
		}
		n := int(h.Length)
		if cap(buf) < frameHead+n {
			buf = make([]byte, max(frameHead+n, 512))
		}
		buf = buf[:cap(buf)]
		payload := buf[frameHead : frameHead+n]
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		ws.Cipher(payload, h.Mask, 0)

		switch h.OpCode {
		case ws.OpClose:
			// Echo the close frame (its code and reason), then hang up.
			out := putHeader(buf, ws.OpClose, true, n)
			conn.Write(out)
			return
		case ws.OpPing:
			if _, err := conn.Write(putHeader(buf, ws.OpPong, true, n)); err != nil {
				return
			}
		case ws.OpPong:
		default:
			if _, err := conn.Write(putHeader(buf, h.OpCode, h.Fin, n)); err != nil {
				return
			}
		}
	}
}

// putHeader writes an unmasked frame header just before the payload, which
// sits at buf[frameHead:frameHead+n], and returns the whole frame.
func putHeader(buf []byte, op ws.OpCode, fin bool, n int) []byte {
	var b0 byte = byte(op)
	if fin {
		b0 |= 0x80
	}
	var start int
	switch {
	case n < 126:
		start = frameHead - 2
		buf[start+1] = byte(n)
	case n <= 0xffff:
		start = frameHead - 4
		buf[start+1] = 126
		binary.BigEndian.PutUint16(buf[start+2:], uint16(n))
	default:
		start = frameHead - 10
		buf[start+1] = 127
		binary.BigEndian.PutUint64(buf[start+2:], uint64(n))
	}
	buf[start] = b0
	return buf[start : frameHead+n]
}

func writeClose(conn net.Conn, code ws.StatusCode) {
	body := ws.NewCloseFrameBody(code, "")
	ws.WriteFrame(conn, ws.NewCloseFrame(body))
}
