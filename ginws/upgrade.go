package ginws

import (
	"bufio"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/internal/frame"
)

// serve upgrades the request and runs h for the life of the connection.
// Its frame stays on the goroutine's stack while the connection lives, so
// the handshake, with its larger frame, is a function of its own: an idle
// connection's stack then stays small enough for the runtime to shrink it.
func (s *Server) serve(c *gin.Context, cfg *config, h Handler) {
	conn := s.upgrade(c, cfg)
	if conn == nil {
		return
	}
	if !s.track(conn) {
		_ = conn.CloseWith(StatusGoingAway, "server is shutting down")
		conn.finish()
		return
	}
	defer conn.end(c) // recovers a panic of h, reports errors, closes, untracks
	conn.startKeepalive()
	conn.herr = h(conn, c)
}

// upgrade runs the upgrade checks in order, answering the first that fails
// with its status and without hijacking; it returns nil then.
//
//go:noinline
func (s *Server) upgrade(c *gin.Context, cfg *config) *Conn {
	if s.closing.Load() {
		refuseUpgrade(c, http.StatusServiceUnavailable, ErrShuttingDown)
		return nil
	}
	key, herr := frame.CheckRequest(c.Request)
	if herr != nil {
		if herr == frame.ErrBadVersion {
			c.Header("Sec-WebSocket-Version", "13")
		}
		refuseUpgrade(c, herr.Status, herr)
		return nil
	}
	if !originAllowed(c, cfg) {
		refuseUpgrade(c, http.StatusForbidden, errOrigin)
		return nil
	}
	if cfg.verify != nil && (!cfg.verify(c) || c.IsAborted()) {
		if !c.Writer.Written() {
			refuseUpgrade(c, http.StatusForbidden, errVerify)
		}
		c.Abort()
		return nil
	}
	proto, herr := selectProtocol(c, cfg)
	if herr != nil {
		refuseUpgrade(c, herr.Status, herr)
		return nil
	}

	c.Writer.WriteHeader(http.StatusSwitchingProtocols) // recorded for gin's logger only
	nc, brw, err := http.NewResponseController(c.Writer).Hijack()
	if err != nil {
		_ = c.Error(err)
		c.AbortWithStatus(http.StatusInternalServerError)
		return nil
	}
	c.Abort()
	// The hijacked reader may already hold the client's first frames; keep
	// it. When it is empty, point it at the socket itself so reads skip
	// net/http's connection reader. Its buffer is reused either way.
	br := brw.Reader
	if br.Buffered() == 0 {
		br.Reset(nc)
	}
	// The response is built in the hijacked writer's buffer; then the
	// writer, which net/http would keep alive as long as the handler runs,
	// lets go of it: frames are built in pooled buffers during each write.
	wbuf := brw.Writer.AvailableBuffer()
	resp := frame.AppendResponse(wbuf[:0], key, proto, "")
	*brw.Writer = bufio.Writer{}
	_ = nc.SetWriteDeadline(time.Now().Add(cfg.closeTimeout))
	_, err = nc.Write(resp)
	_ = nc.SetWriteDeadline(time.Time{})
	if err != nil {
		_ = nc.Close()
		return nil
	}
	return newConn(s, cfg, nc, br, proto, c)
}

var (
	errOrigin = &HandshakeError{Status: http.StatusForbidden, Reason: "origin not allowed"}
	errVerify = &HandshakeError{Status: http.StatusForbidden, Reason: "rejected by VerifyClient"}
)

func refuseUpgrade(c *gin.Context, status int, err error) {
	_ = c.Error(err)
	c.Abort()
	c.String(status, "%s\n", http.StatusText(status))
}

// originAllowed closes cross-site WebSocket hijacking: a browser always
// sends Origin, and a page of another site must not ride on the user's
// cookies. Requests without Origin come from non-browser clients.
func originAllowed(c *gin.Context, cfg *config) bool {
	origins := c.Request.Header["Origin"]
	if len(origins) == 0 {
		return true
	}
	if cfg.checkOrigin != nil {
		return cfg.checkOrigin(c)
	}
	if len(origins) != 1 {
		return false
	}
	u, err := url.Parse(origins[0])
	if err != nil || u.Host == "" {
		return slices.Contains(cfg.originPatterns, origins[0]) // e.g. "null" when listed
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(c.Request.Host) {
		return true
	}
	for _, p := range cfg.originPatterns {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}

func selectProtocol(c *gin.Context, cfg *config) (string, *HandshakeError) {
	if cfg.selectProto == nil && len(cfg.subprotocols) == 0 {
		return "", nil
	}
	offered, herr := frame.Subprotocols(c.Request)
	if herr != nil || len(offered) == 0 {
		return "", herr
	}
	if cfg.selectProto != nil {
		p := cfg.selectProto(c, offered)
		if !slices.Contains(offered, p) {
			return "", nil
		}
		return p, nil
	}
	for _, p := range cfg.subprotocols {
		if slices.Contains(offered, p) {
			return p, nil
		}
	}
	return "", nil
}
