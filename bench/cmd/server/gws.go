package main

import (
	"github.com/gin-gonic/gin"
	"github.com/lxzan/gws"
)

type gwsEcho struct{ gws.BuiltinEventHandler }

func (gwsEcho) OnMessage(socket *gws.Conn, m *gws.Message) {
	defer m.Close()
	_ = socket.WriteMessage(m.Opcode, m.Bytes())
}

type quietLogger struct{}

func (quietLogger) Error(...any) {}

func init() {
	register("gws", "github.com/lxzan/gws", func(r *gin.Engine) {
		up := gws.NewUpgrader(gwsEcho{}, &gws.ServerOption{
			PermessageDeflate:   gws.PermessageDeflate{Enabled: false},
			ReadMaxPayloadSize:  maxMessageSize,
			WriteMaxPayloadSize: maxMessageSize,
			Logger:              quietLogger{},
			// No Authorize: gws checks no origin by default.
		})
		live := newTracker() // only with -graceful
		r.GET("/echo", func(c *gin.Context) {
			socket, err := up.Upgrade(c.Writer, c.Request)
			if err != nil {
				return
			}
			defer live.add(socket, func() {
				// gws sends the close frame and closes the TCP connection
				// at once, which ends ReadLoop.
				_ = socket.WriteClose(1001, []byte("server is shutting down"))
			})()
			// The gin handler's goroutine is the connection's reader.
			socket.ReadLoop()
		})
	})
}
