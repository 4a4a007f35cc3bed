package ginws

import (
	"net/http"
	"path"
	"reflect"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/internal/frame"
)

// IsWebSocket reports whether the request asks for a WebSocket upgrade
// (the plugin's request.ws). Middleware can use it to treat upgrades
// differently from plain requests.
func IsWebSocket(c *gin.Context) bool { return frame.IsUpgrade(c.Request) }

type route struct {
	srv *Server
	cfg *config
	h   Handler
}

// Handle registers a GET route on r (an engine or any RouterGroup, whose
// middleware runs before the upgrade) that upgrades to WebSocket and runs
// h. opts apply to this route on top of the Server's options. A plain GET
// answers 404 unless the HTTP option gives it handlers.
func (s *Server) Handle(r gin.IRoutes, relativePath string, h Handler, opts ...Option) {
	full := relativePath
	if g, ok := r.(interface{ BasePath() string }); ok {
		full = joinPaths(g.BasePath(), relativePath)
	}
	rt := &route{srv: s, cfg: s.cfg.clone(opts), h: h}
	rt.cfg.route = full
	// The HTTP handlers follow serve in the route's own chain, so that
	// middleware among them wraps the rest with c.Next() as on any route;
	// wsRoute, last, marks the chain as a WebSocket route's.
	chain := make([]gin.HandlerFunc, 0, len(rt.cfg.httpHandlers)+2)
	chain = append(chain, rt.serve)
	chain = append(chain, rt.cfg.httpHandlers...)
	r.GET(relativePath, append(chain, wsRoute)...)
}

// wsRoute ends the chain of every WebSocket route (see Handle): a route is
// one exactly when its last handler is this function, whichever Server
// registered it and on whichever engine.
func wsRoute(*gin.Context) {}

var wsRouteCode = reflect.ValueOf(wsRoute).Pointer()

// isWebSocketRoute reports whether the route gin matched for c was
// registered by Handle, of any Server.
func isWebSocketRoute(c *gin.Context) bool {
	h := c.Handler()
	return h != nil && reflect.ValueOf(h).Pointer() == wsRouteCode
}

func (rt *route) serve(c *gin.Context) {
	if !frame.WantsUpgrade(c.Request) {
		if len(rt.cfg.httpHandlers) == 0 {
			c.AbortWithStatus(http.StatusNotFound)
		}
		return // gin goes on with the HTTP handlers
	}
	rt.srv.serve(c, rt.cfg, rt.h)
	c.Abort() // the HTTP handlers are for plain requests only
}

// Middleware routes upgrade requests that no WebSocket route will serve.
// Install it with engine.Use before registering routes (gin copies
// middleware into each route when the route is added). Then an upgrade
// request to an HTTP-only route is not served as HTTP: it goes to the
// DefaultHandler, and without one it is upgraded and closed at once with
// 1008. An upgrade to a path with no route gets gin's 404, unless a
// DefaultHandler is set. Plain requests pass through untouched.
//
// Like gin's NoRoute handlers, the DefaultHandler runs behind the engine
// middleware installed before Middleware only: a group's or a route's own
// middleware does not run for it (gin offers no way to run a route's chain
// without its last handler). Checks it needs, authentication say, go on
// the engine before Middleware or into the DefaultHandler itself.
func (s *Server) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		if !frame.IsUpgrade(c.Request) {
			c.Next()
			return
		}
		if isWebSocketRoute(c) || (c.FullPath() == "" && s.cfg.defaultHandler == nil) {
			c.Next()
			return
		}
		c.Abort()
		h := s.cfg.defaultHandler
		if h == nil {
			h = refuse
		}
		s.serve(c, &s.cfg, h)
	}
}

func refuse(conn *Conn, _ *gin.Context) error {
	return conn.CloseWith(StatusPolicyViolation, "no WebSocket handler for this path")
}

func joinPaths(base, rel string) string {
	if rel == "" {
		return base
	}
	p := path.Join(base, rel)
	if strings.HasSuffix(rel, "/") && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}
