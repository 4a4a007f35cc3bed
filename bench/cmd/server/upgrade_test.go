package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
)

// BenchmarkUpgrade runs the load generator's upgrade cycle in process, one
// connection at a time, against every library's /echo: connect, handshake,
// close frame, the server's close frame, the server hangs up. Every
// library is measured in the same run with the same client, so the
// allocs/op and B/op differences are the servers'; the client's share
// (dial, a read buffer) is the same in every row.
//
//	cd bench && go test -run '^$' -bench Upgrade -benchtime 3000x ./cmd/server
func BenchmarkUpgrade(b *testing.B) {
	gin.SetMode(gin.ReleaseMode)
	for _, name := range names() {
		b.Run(name, func(b *testing.B) {
			r := gin.New()
			libs[name](r)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: r}
			go srv.Serve(ln)
			defer srv.Close()

			req := []byte("GET /echo HTTP/1.1\r\nHost: " + ln.Addr().String() + "\r\n" +
				"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			// A masked close frame with 1000 (mask 0x01020304).
			closeFrame := []byte{0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2}
			buf := make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				upgradeOnce(b, ln.Addr().String(), req, closeFrame, buf)
			}
		})
	}
}

func upgradeOnce(b *testing.B, addr string, req, closeFrame, buf []byte) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(req); err != nil {
		b.Fatal(err)
	}
	n := 0
	for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		m, err := nc.Read(buf[n:])
		if err != nil {
			b.Fatalf("handshake: %v after %q", err, buf[:n])
		}
		n += m
	}
	if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101 ")) {
		b.Fatalf("handshake answered %q", buf[:n])
	}
	if _, err := nc.Write(closeFrame); err != nil {
		b.Fatal(err)
	}
	// The server's close frame, then EOF when it hangs up.
	for {
		if _, err := nc.Read(buf); err == io.EOF {
			return
		} else if err != nil {
			b.Fatal(err)
		}
	}
}
