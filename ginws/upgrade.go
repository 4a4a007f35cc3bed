package ginws

import (
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/internal/frame"
)

// serve runs the upgrade checks in order, answering the first that fails
// with its status and without hijacking, then upgrades and runs h.
func (s *Server) serve(c *gin.Context, cfg *config, h Handler) {
	if s.closing.Load() {
		refuseUpgrade(c, http.StatusServiceUnavailable, ErrShuttingDown)
		return
	}
	key, herr := frame.CheckRequest(c.Request)
	if herr != nil {
		if herr == frame.ErrBadVersion {
			c.Header("Sec-WebSocket-Version", "13")
		}
		refuseUpgrade(c, herr.Status, herr)
		return
	}
	if !originAllowed(c, cfg) {
		refuseUpgrade(c, http.StatusForbidden, errOrigin)
		return
	}
	if cfg.verify != nil && (!cfg.verify(c) || c.IsAborted()) {
		if !c.Writer.Written() {
			refuseUpgrade(c, http.StatusForbidden, errVerify)
		}
		c.Abort()
		return
	}
	proto, herr := selectProtocol(c, cfg)
	if herr != nil {
		refuseUpgrade(c, herr.Status, herr)
		return
	}

	c.Writer.WriteHeader(http.StatusSwitchingProtocols) // recorded for gin's logger only
	nc, brw, err := http.NewResponseController(c.Writer).Hijack()
	if err != nil {
		_ = c.Error(err)
		c.AbortWithStatus(http.StatusInternalServerError)
		return
	}
	c.Abort()
	// The hijacked reader may already hold the client's first frames; keep
	// it. When it is empty, point it at the socket itself so reads skip
	// net/http's connection reader. Its buffer is reused either way.
	br := brw.Reader
	if br.Buffered() == 0 {
		br.Reset(nc)
	}
	// The hijacked writer's buffer becomes the connection's frame buffer.
	wbuf := brw.Writer.AvailableBuffer()
	if cap(wbuf) < 256 {
		wbuf = make([]byte, 0, 4096)
	}
	resp := frame.AppendResponse(wbuf[:0], key, proto, "")
	_ = nc.SetWriteDeadline(time.Now().Add(cfg.closeTimeout))
	_, err = nc.Write(resp)
	_ = nc.SetWriteDeadline(time.Time{})
	if err != nil {
		_ = nc.Close()
		return
	}
	conn := newConn(s, cfg, nc, br, wbuf[:0], proto, c)
	if !s.track(conn) {
		conn.CloseWith(StatusGoingAway, "server is shutting down")
		conn.finish()
		return
	}
	defer s.untrack(conn)
	conn.run(h, c)
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
