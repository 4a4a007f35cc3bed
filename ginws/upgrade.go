package ginws

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/internal/frame"
	"github.com/ginws/ginws/internal/rbuf"
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
		s.closeLate(conn)
		return
	}
	defer conn.end(c) // recovers a panic of h, reports errors, closes, ends the reservation
	conn.startKeepalive()
	conn.herr = h(conn, c)
}

// closeLate closes a connection whose upgrade Shutdown found under way,
// and ends its reservation: with 1001, as Shutdown closes the others, or
// at once when Shutdown's context has ended. Until then it is among the
// live connections, which Shutdown drops when its context ends: it is in
// the set that Shutdown then looks at, or it finds dropping set.
func (s *Server) closeLate(conn *Conn) {
	if s.dropping.Load() {
		conn.abort(ErrShuttingDown)
	} else {
		conn.goAway()
	}
	conn.finish()
	s.handlers.Done()
}

// upgrade runs the upgrade checks in order, answering the first that fails
// with its status and without hijacking; it returns nil then.
//
//go:noinline
func (s *Server) upgrade(c *gin.Context, cfg *config) *Conn {
	// Middleware that wrote a response without aborting (say
	// c.String(401, "") and no return) has answered the request: net/http
	// would send that response when the connection is hijacked, and the
	// 101 after it, in its body.
	if c.Writer.Written() {
		c.Abort()
		return nil
	}
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
	var ext string
	var dp deflateParams
	if cfg.deflate != nil {
		// negotiateDeflate and its parser keep their frames small: a
		// deeper stack here would grow the goroutine's to 8 KiB, which an
		// idle connection then keeps (the runtime halves a stack only
		// while less than a quarter of it is in use, and net/http and gin
		// use most of 2 KiB).
		ext, dp = negotiateDeflate(c.Request.Header["Sec-Websocket-Extensions"], cfg.deflate)
	}

	// gin's writer panics, rather than failing, when the one it wraps
	// cannot be hijacked: that must be found before the connection is
	// counted for Shutdown below.
	if !canHijack(c.Writer) {
		refuseUpgrade(c, http.StatusInternalServerError, errNoHijack)
		return nil
	}
	// From here Shutdown waits for this connection: an upgrade that passed
	// the check above while Shutdown began is refused here, or closed by
	// Shutdown, or by serve when Shutdown began after this.
	if !s.reserve() {
		refuseUpgrade(c, http.StatusServiceUnavailable, ErrShuttingDown)
		return nil
	}
	c.Writer.WriteHeader(http.StatusSwitchingProtocols) // recorded for gin's logger only
	nc, brw, err := hijack(c.Writer)
	if err != nil {
		s.handlers.Done()
		_ = c.Error(err)
		c.AbortWithStatus(http.StatusInternalServerError)
		return nil
	}
	c.Abort()
	// The hijacked reader may already hold the client's first frames: they
	// move to the connection's own reader, which holds a buffer only while
	// it holds bytes, and the hijacked one lets go of its buffer (net/http
	// keeps the bufio.Reader itself as long as the handler runs).
	early, _ := brw.Reader.Peek(brw.Reader.Buffered())
	br := rbuf.New(nc, early)
	*brw.Reader = bufio.Reader{}
	// The response is built in the hijacked writer's buffer; then the
	// writer, which net/http would keep alive as long as the handler runs,
	// lets go of it: frames are built in pooled buffers during each write.
	wbuf := brw.Writer.AvailableBuffer()
	resp := frame.AppendResponse(wbuf[:0], key, proto, ext, c.Writer.Header())
	*brw.Writer = bufio.Writer{}
	// The response fits in the new socket's send buffer: a deadline (two
	// timer changes) is needed only for what it does not take at once.
	rest, _, err := writeNow(br.RawConn(), resp)
	if err == nil && len(rest) > 0 {
		_ = nc.SetWriteDeadline(time.Now().Add(cfg.closeTimeout))
		_, err = nc.Write(rest)
		_ = nc.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		s.handlers.Done()
		_ = nc.Close()
		return nil
	}
	return newConn(s, cfg, nc, br, proto, dp, c)
}

// canHijack reports whether the writer at the bottom of w's chain (each
// wrapper's Unwrap, as http.ResponseController follows) can be hijacked:
// net/http's HTTP/1 writer can, an HTTP/2 one or an
// httptest.ResponseRecorder cannot. Such a request is refused here,
// with a 500 of its own, before the upgrade is counted and its 101
// recorded; hijack catches what this cannot see.
func canHijack(w http.ResponseWriter) bool {
	for range 32 {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			_, ok = w.(http.Hijacker)
			return ok
		}
		w = u.Unwrap()
	}
	return true // a chain this long: Hijack will tell
}

// hijack takes the connection over from w. A wrapper of gin's writer
// without Unwrap (a middleware's) hides from canHijack the writer under
// it, and gin's Hijack, reached through the wrapper, panics when that one
// cannot be hijacked: the panic becomes errNoHijack, so that the upgrade,
// counted for Shutdown by now, is uncounted. w.Hijack is what
// http.ResponseController would call (a gin.ResponseWriter is a
// Hijacker); calling it directly saves the frame that the recover's
// costs, which would otherwise take an idle handler's stack past 4 KiB
// (see upgrade's go:noinline and TestIdleMemory).
func hijack(w gin.ResponseWriter) (nc net.Conn, brw *bufio.ReadWriter, err error) {
	defer func() {
		if v := recover(); v != nil {
			nc, brw, err = nil, nil, fmt.Errorf("%w (Hijack panicked: %v)", errNoHijack, v)
		}
	}()
	return w.Hijack()
}

// errNoHijack: the request came through a writer that cannot be hijacked.
var errNoHijack = fmt.Errorf("ginws: the response writer cannot be hijacked: %w", http.ErrNotSupported)

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
	if sameHost(host, strings.ToLower(c.Request.Host), u.Scheme) {
		return true
	}
	for _, p := range cfg.originPatterns {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}

// sameHost compares an Origin's host with the request's Host, each with or
// without a port: a missing one is the default of the Origin's scheme, so
// "http://example.com" matches "example.com:80", but not "example.com:8080".
func sameHost(origin, host, scheme string) bool {
	if origin == host {
		return true
	}
	var def string
	switch strings.ToLower(scheme) {
	case "http", "ws":
		def = "80"
	case "https", "wss":
		def = "443"
	default:
		return false
	}
	oh, op := splitPort(origin, def)
	hh, hp := splitPort(host, def)
	return oh == hh && op == hp
}

// splitPort splits host[:port] (an IPv6 address in brackets), giving def
// when there is no port.
func splitPort(h, def string) (host, port string) {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || i < strings.LastIndexByte(h, ']') {
		return h, def
	}
	return h[:i], h[i+1:]
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
		// The hook gets a copy: what it returns is checked against the
		// offer as the client made it, even if the hook edited its slice
		// (lower-cased it, say) and picked from that.
		p := cfg.selectProto(c, slices.Clone(offered))
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

// deflateParams is what the handshake agreed on for permessage-deflate.
type deflateParams struct {
	on             bool
	level          int
	threshold      int
	serverTakeover bool // the server compresses with context takeover
	clientNoCtx    bool // the client compresses every message on its own
}
