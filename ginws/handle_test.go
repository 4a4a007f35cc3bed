package ginws_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestRouting(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(s.Middleware())
		r.GET("/http", func(c *gin.Context) { c.String(http.StatusOK, "plain") })
		s.Handle(r, "/ws", echoHandler)
		s.Handle(r, "/both", echoHandler, ginws.HTTP(func(c *gin.Context) { c.String(http.StatusOK, "http side") }))

		api := r.Group("/api", func(c *gin.Context) {
			if c.GetHeader("Authorization") != "Bearer ok" {
				c.AbortWithStatus(http.StatusUnauthorized)
				return
			}
			c.Set("user", "alice")
			c.Set("upgrade", ginws.IsWebSocket(c))
			c.Next()
		})
		s.Handle(api, "/me", func(conn *ginws.Conn, c *gin.Context) error {
			// The context stays usable for the life of the connection.
			_, _, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			return conn.WriteMessage(c, ginws.MessageText, []byte(c.GetString("user")+" "+boolStr(c.GetBool("upgrade"))))
		})
	})

	t.Run("plain GET on a WebSocket route is 404", func(t *testing.T) {
		code, _ := get(t, ts.URL+"/ws")
		assert.Equal(t, http.StatusNotFound, code)
	})
	t.Run("same path serves HTTP and WebSocket", func(t *testing.T) {
		code, body := get(t, ts.URL+"/both")
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "http side", body)
		c := dial(t, ts.wsURL("/both"), nil)
		c.send(ws.OpText, []byte("hi"))
		op, p := c.readMessage()
		assert.Equal(t, ws.OpText, op)
		assert.Equal(t, "hi", string(p))
	})
	t.Run("group middleware rejects before the upgrade", func(t *testing.T) {
		_, err := tryDial(t, ts.wsURL("/api/me"), nil)
		var se ws.StatusError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, http.StatusUnauthorized, int(se))
	})
	t.Run("group middleware values reach the handler", func(t *testing.T) {
		c := dial(t, ts.wsURL("/api/me"), http.Header{"Authorization": {"Bearer ok"}})
		c.send(ws.OpText, []byte("who"))
		_, p := c.readMessage()
		assert.Equal(t, "alice true", string(p))
	})
	t.Run("upgrade to an HTTP-only route is not served as HTTP", func(t *testing.T) {
		c := dial(t, ts.wsURL("/http"), nil)
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusPolicyViolation, code)
	})
	t.Run("upgrade to no route is 404", func(t *testing.T) {
		_, err := tryDial(t, ts.wsURL("/nowhere"), nil)
		var se ws.StatusError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, http.StatusNotFound, int(se))
	})
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestDefaultHandler(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(s.Middleware())
		r.GET("/http", func(c *gin.Context) { c.String(http.StatusOK, "plain") })
	}, ginws.DefaultHandler(func(conn *ginws.Conn, c *gin.Context) error {
		return conn.WriteMessage(c, ginws.MessageText, []byte("default "+c.Request.URL.Path))
	}))
	for _, path := range []string{"/http", "/nowhere"} {
		c := dial(t, ts.wsURL(path), nil)
		_, p := c.readMessage()
		assert.Equal(t, "default "+path, string(p))
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusNormalClosure, code)
	}
	code, body := get(t, ts.URL+"/http")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "plain", body)
}

// TestDefaultHandlerBehindEngineMiddleware: the DefaultHandler runs behind
// the engine middleware installed before Middleware (as gin's NoRoute
// handlers do), so that is where the checks it needs go.
func TestDefaultHandlerBehindEngineMiddleware(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(func(c *gin.Context) {
			if c.GetHeader("Authorization") != "Bearer ok" {
				c.AbortWithStatus(http.StatusUnauthorized)
			}
		}, s.Middleware())
		r.GET("/admin/stats", func(c *gin.Context) { c.String(http.StatusOK, "secret") })
	}, ginws.DefaultHandler(func(conn *ginws.Conn, c *gin.Context) error {
		return conn.WriteMessage(c, ginws.MessageText, []byte("default "+c.Request.URL.Path))
	}))
	addr := ts.Listener.Addr().String()
	_, _, resp := rawUpgrade(t, addr, "/admin/stats", nil, nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "upgrade without credentials")
	c := dial(t, ts.wsURL("/admin/stats"), http.Header{"Authorization": {"Bearer ok"}})
	_, p := c.readMessage()
	assert.Equal(t, "default /admin/stats", string(p))
}

// TestUpgradeListWithProtocolVersion: RFC 7230 section 6.7 lets Upgrade
// name protocols with a version ("HTTP/2.0"); websocket anywhere in the
// list is an upgrade to WebSocket.
func TestUpgradeListWithProtocolVersion(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/ws", echoHandler) })
	addr := ts.Listener.Addr().String()
	for _, up := range []string{"HTTP/2.0, websocket", "websocket, HTTP/2.0", "h2c/1, websocket"} {
		_, _, resp := rawUpgrade(t, addr, "/ws", map[string]string{"Upgrade": up}, nil)
		assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "Upgrade: %s", up)
	}
}

func TestHandshakeErrors(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/ws", echoHandler) })
	addr := ts.Listener.Addr().String()
	cases := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"bad version", map[string]string{"Sec-WebSocket-Version": "8"}, http.StatusUpgradeRequired},
		{"missing version", map[string]string{"Sec-WebSocket-Version": ""}, http.StatusUpgradeRequired},
		{"missing key", map[string]string{"Sec-WebSocket-Key": ""}, http.StatusBadRequest},
		{"short key", map[string]string{"Sec-WebSocket-Key": "c2hvcnQ="}, http.StatusBadRequest},
		{"no Connection upgrade", map[string]string{"Connection": "keep-alive"}, http.StatusBadRequest},
		{"no Upgrade header", map[string]string{"Upgrade": ""}, http.StatusBadRequest},
		{"wrong Upgrade", map[string]string{"Upgrade": "h2c"}, http.StatusBadRequest},
		{"foreign origin", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, resp := rawUpgrade(t, addr, "/ws", tc.header, nil)
			assert.Equal(t, tc.status, resp.StatusCode)
			if tc.status == http.StatusUpgradeRequired {
				assert.Equal(t, "13", resp.Header.Get("Sec-WebSocket-Version"))
			}
		})
	}
	t.Run("same origin and mixed-case tokens upgrade", func(t *testing.T) {
		_, _, resp := rawUpgrade(t, addr, "/ws", map[string]string{
			"Origin": "http://" + addr, "Connection": "keep-alive, UPGRADE", "Upgrade": "WebSocket",
		}, nil)
		assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-WebSocket-Accept"))
	})
}

func TestHandshakeErrorValues(t *testing.T) {
	var he *ginws.HandshakeError
	err := error(&ginws.HandshakeError{Status: 400, Reason: "x"})
	require.True(t, errors.As(err, &he))
	assert.Equal(t, 400, he.Status)
}

// Headers that middleware or VerifyClient set before the upgrade reach the
// client in the 101 response, as they would in any other response of the
// route; the handshake's own fields stay the handshake's.
func TestMiddlewareHeadersInUpgradeResponse(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(func(c *gin.Context) {
			c.Header("X-Request-Id", "req-42")
			c.Header("Sec-WebSocket-Accept", "forged")
			c.Next()
		})
		s.Handle(r, "/ws", echoHandler, ginws.VerifyClient(func(c *gin.Context) bool {
			http.SetCookie(c.Writer, &http.Cookie{Name: "session", Value: "s1"})
			return true
		}))
	})
	nc, br, resp := rawUpgrade(t, ts.Listener.Addr().String(), "/ws", nil, nil)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, "req-42", resp.Header.Get("X-Request-Id"))
	assert.Equal(t, []string{"session=s1"}, resp.Header["Set-Cookie"])
	assert.Equal(t, []string{"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, resp.Header["Sec-Websocket-Accept"])

	// The connection works after the longer response.
	c := &client{t: t, nc: nc, r: br}
	c.send(ws.OpText, []byte("hi"))
	_, p := c.readMessage()
	assert.Equal(t, "hi", string(p))
}

// A middleware that answers without aborting (a status written, no body:
// c.String(401, ""), c.Writer.WriteHeaderNow()) has given the request its
// response: the route must not upgrade it as well. net/http sends a
// written header when the connection is hijacked, so an upgrade would put
// the 101 into the 401's body and run the handler for a client that was
// refused.
func TestNoUpgradeAfterMiddlewareResponse(t *testing.T) {
	var ran atomic.Int32
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(func(c *gin.Context) {
			if c.GetHeader("Authorization") == "" {
				c.String(http.StatusUnauthorized, "") // forgot c.Abort()
			}
		})
		s.Handle(r, "/ws", func(conn *ginws.Conn, c *gin.Context) error {
			ran.Add(1)
			return nil
		})
	})
	_, _, resp := rawUpgrade(t, ts.Listener.Addr().String(), "/ws", nil, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	body, err := io.ReadAll(resp.Body) // ends when net/http ends the response
	require.NoError(t, err, "the 401's body")
	assert.Empty(t, string(body))
	assert.Zero(t, ran.Load(), "the handler ran for a refused request")
}

// An upgrade through a ResponseWriter that cannot be hijacked (an
// httptest.ResponseRecorder in a unit test of the router) fails with the
// reason in c.Errors, and leaves nothing for Shutdown to wait for. gin's
// Hijack panicked on such a writer after the upgrade had been counted
// among the handlers, so Shutdown waited for one that never ran.
//
// The same through a middleware's wrapper of c.Writer that has no Unwrap
// (writerWrapper): the check before the upgrade is counted cannot see
// through it, and gin's Hijack, reached through the wrapper, panicked
// after the upgrade had been counted; no 500 reaches the recorder then
// (gin marks the response written before it panics).
func TestUpgradeWithoutHijacker(t *testing.T) {
	for name, wrapped := range map[string]bool{"gin's writer": false, "a wrapper without Unwrap": true} {
		t.Run(name, func(t *testing.T) {
			s := ginws.New()
			var recorded []error
			r := gin.New()
			r.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, _ any) {
				c.AbortWithStatus(http.StatusInternalServerError)
			}), func(c *gin.Context) {
				if wrapped {
					c.Writer = writerWrapper{c.Writer}
				}
				c.Next()
				for _, e := range c.Errors {
					recorded = append(recorded, e.Err)
				}
			})
			s.Handle(r, "/ws", echoHandler)
			req := httptest.NewRequest(http.MethodGet, "/ws", nil)
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			req.Header.Set("Sec-WebSocket-Version", "13")
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req) // gin.Recovery would answer a panic

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, s.Shutdown(ctx), "Shutdown waited for an upgrade that failed")
			require.Len(t, recorded, 1, "the reason in c.Errors")
			assert.ErrorIs(t, recorded[0], http.ErrNotSupported)
			if !wrapped {
				assert.Equal(t, http.StatusInternalServerError, w.Code)
			}
		})
	}
}

// writerWrapper is a middleware's wrapper of gin's writer (a logger's, a
// compressor's) without Unwrap: http.ResponseController calls the Hijack
// it gets from gin's writer, which panics when the writer under gin's
// cannot be hijacked.
type writerWrapper struct{ gin.ResponseWriter }
