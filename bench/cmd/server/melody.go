package main

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/olahol/melody"
)

func init() {
	register("melody", "github.com/olahol/melody", func(r *gin.Engine) {
		m := melody.New()
		m.Config.MaxMessageSize = maxMessageSize
		m.Upgrader.CheckOrigin = func(*http.Request) bool { return true }
		m.Upgrader.EnableCompression = false
		m.HandleMessage(func(s *melody.Session, msg []byte) { _ = s.Write(msg) })
		m.HandleMessageBinary(func(s *melody.Session, msg []byte) { _ = s.WriteBinary(msg) })
		m.HandleError(func(*melody.Session, error) {})
		r.GET("/echo", func(c *gin.Context) {
			_ = m.HandleRequest(c.Writer, c.Request)
		})
	})
}
