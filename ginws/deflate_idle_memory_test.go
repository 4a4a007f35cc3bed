//go:build !race

// Like idle_memory_test.go: stack figures hold only without the race
// detector.

package ginws_test

import (
	"net"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// DeflateOptions promises that with its zero value "nothing
// compression-related is held by an idle connection" (except the client's
// window under client context takeover, which the client_no_context_takeover
// offer here rules out), and doc.go that between messages a connection
// "keeps nothing". An idle connection of a looping handler keeps a 4 KiB
// stack (TestIdleMemory); on a route with Compression it must keep the
// same, whether the client offered permessage-deflate or not.
func TestDeflateIdleStack(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 300 connections")
	}
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/plain", echoHandler)
		s.Handle(r, "/deflate", echoHandler, ginws.Compression(ginws.DeflateOptions{}))
	})
	for _, tc := range []struct{ name, path, offer string }{
		{"no compression", "/plain", ""},
		{"compression, not offered", "/deflate", ""},
		{"compression, agreed", "/deflate", "permessage-deflate; client_no_context_takeover"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 300
			before := collectedMemStats()
			conns := make([]net.Conn, 0, n)
			defer func() {
				for _, nc := range conns {
					_ = nc.Close()
				}
				require.Eventually(t, func() bool { return ts.ws.Len() == 0 }, 10*time.Second, 10*time.Millisecond)
			}()
			for range n {
				h := map[string]string{}
				if tc.offer != "" {
					h["Sec-WebSocket-Extensions"] = tc.offer
				}
				nc, _, resp := rawUpgrade(t, ts.Listener.Addr().String(), tc.path, h, nil)
				conns = append(conns, nc)
				if tc.offer != "" {
					require.NotEmpty(t, resp.Header.Get("Sec-WebSocket-Extensions"))
				}
			}
			require.Eventually(t, func() bool { return ts.ws.Len() == n }, 10*time.Second, 10*time.Millisecond)
			after := collectedMemStats()
			stack := (float64(after.StackInuse) - float64(before.StackInuse)) / n
			t.Logf("stack per idle connection: %.0f B", stack)
			assert.LessOrEqual(t, stack, 4096.0+512, "the stacks grew")
		})
	}
}
