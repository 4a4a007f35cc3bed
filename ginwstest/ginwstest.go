// Package ginwstest dials WebSocket routes in tests without opening a
// port: what httptest.NewRecorder is for plain routes, and injectWS for
// Node's fastify-websocket.
//
// Dial sends an upgrade request to any http.Handler, usually the
// *gin.Engine of the application under test, and returns the client end
// of the connection:
//
//	r := gin.New()
//	ginws.Handle(r, "/echo", echo)
//
//	c, _, err := ginwstest.Dial(ctx, r, "/echo")
//	if err != nil {
//		t.Fatal(err)
//	}
//	defer c.Close()
//	err = c.WriteMessage(ctx, ginws.MessageText, []byte("hi"))
//	typ, msg, err := c.ReadMessage(ctx)
//
// The request goes through the handler exactly as one from the network
// would: gin's routing, every middleware, the handshake checks, the origin
// check, VerifyClient, subprotocol selection, then the ginws handler with
// its *gin.Context. The handler runs in a goroutine of its own, on the
// server end of an in-memory connection that behaves like a TCP socket
// (bounded buffers, deadlines, half-close). When the upgrade is refused,
// Dial returns the HTTP response (status, header, body) and an error
// matching ErrBadHandshake.
//
// The client speaks RFC 6455 strictly: its frames are masked, and a server
// frame that breaks a rule fails the connection with the close code the
// rule calls for, as ginws does on the server side. Errors are ginws's
// own: a close by the server is a *ginws.CloseError with its code and
// reason, a violation a *ginws.ProtocolError, a connection lost without a
// close frame matches *ginws.CloseError with ginws.StatusAbnormalClosure
// (use errors.As or ginws.CloseStatus).
//
// Close (or CloseWith) ends the connection and then waits for the handler
// to return; call it also when the server closed first. A test that closes
// every connection it dials leaves no goroutine behind: ginwstest starts
// only the handler's goroutine, and its in-memory connection none
// (ginwstest's own tests run under goleak).
package ginwstest

import (
	"bufio"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/internal/frame"
)

// ErrBadHandshake is matched (errors.Is) by the error Dial returns when
// the server did not switch protocols. The response Dial returns with it
// holds the status, header and body the server answered.
var ErrBadHandshake = errors.New("ginwstest: bad handshake")

// ErrHandlerRunning is returned by Close and CloseWith when the handler
// has not returned within the close timeout of the connection's end.
var ErrHandlerRunning = errors.New("ginwstest: the handler did not return after the connection ended")

// DefaultRemoteAddr is the client address the handler sees in
// c.Request.RemoteAddr and Conn.RemoteAddr, unless RemoteAddr says
// otherwise. It is in TEST-NET-1, like httptest's.
const DefaultRemoteAddr = "192.0.2.1:1234"

// DefaultHost is the Host of a request dialed with a bare path.
const DefaultHost = "example.com"

// A DialOption configures Dial.
type DialOption func(*dialConfig)

type dialConfig struct {
	header       http.Header
	protocols    []string
	remoteAddr   string
	readLimit    int64
	closeTimeout time.Duration
	bufferSize   int
	onPing       func([]byte)
	onPong       func([]byte)
	deflate      []string // nil: permessage-deflate not offered
}

// Header adds h to the upgrade request: Authorization, Cookie, Origin and
// the like. A Host entry sets the request's Host. The handshake headers
// (Upgrade, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version) are
// filled in only when h does not set them, so a test can send a broken
// handshake on purpose. A Sec-WebSocket-Protocol or
// Sec-WebSocket-Extensions entry is an offer the server's answer is
// checked against, as one made with Subprotocols (which replaces it) or
// Compression (which adds to it); the client speaks permessage-deflate
// when the server accepts it, offered either way.
func Header(h http.Header) DialOption {
	return func(c *dialConfig) {
		for k, vs := range h {
			for _, v := range vs {
				c.header.Add(k, v)
			}
		}
	}
}

// Subprotocols offers these subprotocols, in the client's order of
// preference. Conn.Subprotocol reports the server's choice.
func Subprotocols(protocols ...string) DialOption {
	return func(c *dialConfig) { c.protocols = append(c.protocols, protocols...) }
}

// RemoteAddr sets the client address ("ip:port") the handler sees
// (DefaultRemoteAddr by default), e.g. to test c.ClientIP() rules.
func RemoteAddr(addr string) DialOption { return func(c *dialConfig) { c.remoteAddr = addr } }

// ReadLimit caps the size of a message the client accepts; a larger one
// fails the connection with 1009. n <= 0, the default, means no limit.
func ReadLimit(n int64) DialOption { return func(c *dialConfig) { c.readLimit = n } }

// CloseTimeout bounds each wait of Close (for the write lock, for the
// server's close frame, then for the handler to return) to d
// (ginws.DefaultCloseTimeout, 5 s, when d <= 0, the default).
func CloseTimeout(d time.Duration) DialOption {
	return func(c *dialConfig) { c.closeTimeout = d }
}

// BufferSize sets how many bytes each direction of the in-memory
// connection holds before a writer blocks (DefaultBufferSize when n <= 0).
// A small buffer makes a client that does not read a slow peer sooner.
func BufferSize(n int) DialOption { return func(c *dialConfig) { c.bufferSize = n } }

// OnPing is called with the payload of every ping the server sends (a
// copy, the callee's to keep), by the goroutine reading when it arrives.
// The client answers pings itself.
func OnPing(f func(payload []byte)) DialOption { return func(c *dialConfig) { c.onPing = f } }

// OnPong is called with the payload of every pong the server sends, by the
// goroutine reading when it arrives.
func OnPong(f func(payload []byte)) DialOption { return func(c *dialConfig) { c.onPong = f } }

// Compression offers permessage-deflate (RFC 7692), with the given
// extension parameters as written ("server_no_context_takeover",
// "client_max_window_bits", ...). When the server accepts (a route with
// ginws.Compression), the client inflates the compressed messages it
// receives, keeping the window when the server uses context takeover, and
// compresses every non-empty message it sends, each on its own (with
// Huffman coding only when the server limits the client's window).
// Conn.Compression and the response's Sec-WebSocket-Extensions tell what
// was agreed.
func Compression(params ...string) DialOption {
	return func(c *dialConfig) { c.deflate = append([]string{}, params...) }
}

// Dial sends a WebSocket upgrade request for target to h and, when h
// switches protocols, returns the client end of the connection and the
// 101 response. target is a path with an optional query ("/chat?room=1"),
// served with Host DefaultHost, or an absolute URL (ws, wss, http or
// https) whose host becomes the Host; wss and https set the request's TLS
// field, as a TLS listener would.
//
// ctx bounds the handshake only. When h answers without switching
// protocols, Dial returns a nil *Conn, the response (its body is
// buffered: read it after Dial returns) and an error matching
// ErrBadHandshake. A handler that has not answered when ctx ends keeps
// running; its request's context is canceled.
func Dial(ctx context.Context, h http.Handler, target string, opts ...DialOption) (*Conn, *http.Response, error) {
	cfg := dialConfig{
		header:       make(http.Header),
		remoteAddr:   DefaultRemoteAddr,
		closeTimeout: ginws.DefaultCloseTimeout,
		bufferSize:   DefaultBufferSize,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.closeTimeout <= 0 {
		cfg.closeTimeout = ginws.DefaultCloseTimeout
	}
	if cfg.bufferSize <= 0 {
		cfg.bufferSize = DefaultBufferSize
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	u, err := parseTarget(target)
	if err != nil {
		return nil, nil, err
	}
	clientAddr, err := tcpAddr(cfg.remoteAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("ginwstest: RemoteAddr: %w", err)
	}
	serverAddr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 80}
	if u.Scheme == "https" {
		serverAddr.Port = 443
	}

	key, req, cancelReq, err := newRequest(u, &cfg, serverAddr)
	if err != nil {
		return nil, nil, err
	}
	cc, sc := newPipe(cfg.bufferSize, clientAddr, serverAddr)
	ended := &endSignal{ch: make(chan struct{})}
	sc.onClose = ended.fire // the server hung up: the connection has ended
	rw := &responseWriter{nc: sc, hijacked: make(chan struct{}), reqCtx: req.Context(), header: make(http.Header)}
	s := &served{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer cancelReq() // as net/http: the request's context ends with ServeHTTP
		s.err = serve(h, rw, req)
	}()

	select {
	case <-rw.hijacked:
	case <-s.done:
		select {
		case <-rw.hijacked: // hijacked, and the handler is done already
		default:
			_ = cc.Close()
			_ = sc.Close()
			if s.err != nil {
				return nil, nil, s.err // net/http answers nothing after a panic
			}
			resp := rw.response(req)
			return nil, resp, fmt.Errorf("%w: %s", ErrBadHandshake, resp.Status)
		}
	case <-ctx.Done():
		cancelReq()
		_ = cc.Close()
		return nil, nil, ctx.Err()
	}

	// The handler hijacked the connection: read its response from the wire.
	fail := func(resp *http.Response, err error) (*Conn, *http.Response, error) {
		_ = cc.Close()
		if werr := s.wait(cfg.closeTimeout); werr != nil {
			err = errors.Join(err, werr)
		}
		return nil, resp, err
	}
	br := bufio.NewReader(cc)
	release, err := bindDeadline(ctx, cc.SetReadDeadline)
	if err != nil {
		return fail(nil, err)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		release()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fail(nil, fmt.Errorf("ginwstest: reading the handshake response: %w", err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, rerr := io.ReadAll(resp.Body)
		release()
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		err = fmt.Errorf("%w: %s", ErrBadHandshake, resp.Status)
		if rerr != nil {
			err = errors.Join(err, rerr)
		}
		return fail(resp, err)
	}
	release()
	resp.Body = http.NoBody
	// The answer is checked against the offers the request carried, made
	// with the options or with Header.
	protos, deflate := offers(req.Header)
	proto, err := checkResponse(resp, key, protos)
	if err != nil {
		return fail(resp, err)
	}
	dz, err := checkExtensions(resp.Header, deflate)
	if err != nil {
		return fail(resp, err)
	}
	return newConn(cc, br, proto, dz, &cfg, s, ended), resp, nil
}

// endSignal is closed when either end of the connection has closed.
type endSignal struct {
	once sync.Once
	ch   chan struct{}
}

func (e *endSignal) fire() { e.once.Do(func() { close(e.ch) }) }

// served is the handler's goroutine: done when ServeHTTP returned, err a
// panic that escaped it.
type served struct {
	done chan struct{}
	err  error
}

// wait waits for the handler to return, at most d.
func (s *served) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.done:
		return s.err
	case <-t.C:
		return fmt.Errorf("%w (waited %v)", ErrHandlerRunning, d)
	}
}

func parseTarget(target string) (*url.URL, error) {
	if strings.HasPrefix(target, "/") {
		target = "http://" + DefaultHost + target
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("ginwstest: target: %w", err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	case "http", "https":
	default:
		return nil, fmt.Errorf("ginwstest: target %q: want a path or a ws, wss, http or https URL", target)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("ginwstest: target %q has no host", target)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.Fragment = ""
	return u, nil
}

func tcpAddr(s string) (*net.TCPAddr, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return net.TCPAddrFromAddrPort(ap), nil
}

// newRequest builds the upgrade request as net/http's server would hand
// it to a handler.
func newRequest(u *url.URL, cfg *dialConfig, local net.Addr) (key string, req *http.Request, cancel context.CancelFunc, err error) {
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), http.LocalAddrContextKey, local))
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return "", nil, nil, fmt.Errorf("ginwstest: %w", err)
	}
	req.Body = http.NoBody
	req.RequestURI = u.RequestURI()
	// As net/http's server parses it: the path and query only.
	if req.URL, err = url.ParseRequestURI(req.RequestURI); err != nil {
		cancel()
		return "", nil, nil, fmt.Errorf("ginwstest: %w", err)
	}
	req.RemoteAddr = cfg.remoteAddr
	if u.Scheme == "https" {
		req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, ServerName: u.Hostname()}
	}
	h := cfg.header.Clone()
	if host := h.Get("Host"); host != "" {
		req.Host = host
		h.Del("Host")
	}
	setDefault := func(name, value string) {
		if _, ok := h[name]; !ok {
			h.Set(name, value)
		}
	}
	setDefault("Upgrade", "websocket")
	setDefault("Connection", "Upgrade")
	setDefault("Sec-Websocket-Version", "13")
	if _, ok := h["Sec-Websocket-Key"]; !ok {
		var raw [16]byte
		_, _ = rand.Read(raw[:])
		h.Set("Sec-Websocket-Key", base64.StdEncoding.EncodeToString(raw[:]))
	}
	if len(cfg.protocols) > 0 {
		h.Set("Sec-Websocket-Protocol", strings.Join(cfg.protocols, ", "))
	}
	if cfg.deflate != nil {
		h.Add("Sec-Websocket-Extensions", strings.Join(append([]string{wsflate.ExtensionName}, cfg.deflate...), "; "))
	}
	req.Header = h
	return h.Get("Sec-Websocket-Key"), req, cancel, nil
}

// offers reads the subprotocols and the permessage-deflate offers (their
// parameter names; nil when there is none) from the upgrade request's
// header.
func offers(h http.Header) (protocols, deflate []string) {
	for _, v := range h.Values("Sec-Websocket-Protocol") {
		httphead.ScanTokens([]byte(v), func(t []byte) bool {
			protocols = append(protocols, string(t))
			return true
		})
	}
	for _, v := range h.Values("Sec-Websocket-Extensions") {
		opts, _ := httphead.ParseOptions([]byte(v), nil)
		for _, o := range opts {
			if !strings.EqualFold(string(o.Name), wsflate.ExtensionName) {
				continue
			}
			if deflate == nil {
				deflate = []string{}
			}
			o.Parameters.ForEach(func(k, _ []byte) bool {
				deflate = append(deflate, string(k))
				return true
			})
		}
	}
	return protocols, deflate
}

// checkResponse applies the client's rules of RFC 6455 section 4.1 to a
// 101 response and returns the subprotocol it chose. Extensions are
// checked by checkExtensions.
func checkResponse(resp *http.Response, key string, offered []string) (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrBadHandshake, fmt.Sprintf(format, args...))
	}
	if !hasToken(resp.Header, "Upgrade", "websocket") {
		return bad("no \"Upgrade: websocket\" in the response")
	}
	if !hasToken(resp.Header, "Connection", "upgrade") {
		return bad("no \"Connection: Upgrade\" in the response")
	}
	if got, want := resp.Header.Get("Sec-Websocket-Accept"), string(frame.AppendAccept(nil, key)); got != want {
		return bad("Sec-WebSocket-Accept is %q, want %q", got, want)
	}
	protos := resp.Header.Values("Sec-Websocket-Protocol")
	switch {
	case len(protos) == 0:
		return "", nil
	case len(protos) > 1 || !slices.Contains(offered, protos[0]):
		return bad("the server chose subprotocol %q, not one the client offered", strings.Join(protos, ", "))
	}
	return protos[0], nil
}

// deflateAgreed is what the handshake agreed on for permessage-deflate.
type deflateAgreed struct {
	on          bool
	level       int  // of the client's compression
	serverNoCtx bool // the server compresses every message on its own
}

// checkExtensions accepts only what the client offered: permessage-deflate
// once, with parameters RFC 7692 section 7.1 allows in a response.
func checkExtensions(h http.Header, offer []string) (deflateAgreed, error) {
	values := h.Values("Sec-Websocket-Extensions")
	if len(values) == 0 {
		return deflateAgreed{}, nil
	}
	bad := func(format string, args ...any) (deflateAgreed, error) {
		return deflateAgreed{}, fmt.Errorf("%w: Sec-WebSocket-Extensions %q: %s", ErrBadHandshake,
			strings.Join(values, ", "), fmt.Sprintf(format, args...))
	}
	if offer == nil {
		return bad("the client offered no extension")
	}
	var opts []httphead.Option
	for _, v := range values {
		var ok bool
		if opts, ok = httphead.ParseOptions([]byte(v), opts); !ok {
			return bad("does not parse")
		}
	}
	if len(opts) != 1 || !strings.EqualFold(string(opts[0].Name), wsflate.ExtensionName) {
		return bad("the client offered permessage-deflate only, once")
	}
	var p wsflate.Parameters
	if err := p.Parse(opts[0]); err != nil {
		return bad("%v", err)
	}
	offered := func(name string) bool {
		return slices.ContainsFunc(offer, func(o string) bool {
			k, _, _ := strings.Cut(o, "=")
			return strings.EqualFold(strings.TrimSpace(k), name)
		})
	}
	if p.ClientMaxWindowBits.Defined() && !offered("client_max_window_bits") {
		return bad("client_max_window_bits was not offered")
	}
	a := deflateAgreed{on: true, level: flate.BestSpeed, serverNoCtx: p.ServerNoContextTakeover}
	if p.ClientMaxWindowBits.Defined() && p.ClientMaxWindowBits < 15 {
		a.level = flate.HuffmanOnly // compress/flate refers back 32 KiB; Huffman coding refers back to nothing
	}
	return a, nil
}

func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		found := false
		httphead.ScanTokens([]byte(v), func(t []byte) bool {
			found = strings.EqualFold(string(t), token)
			return !found
		})
		if found {
			return true
		}
	}
	return false
}

// bindDeadline makes the end of ctx interrupt the I/O calls that follow
// on one direction of the connection, by moving its deadline to the past
// (so ctx.Err() is set whenever such a call times out); release undoes
// it.
func bindDeadline(ctx context.Context, set func(time.Time) error) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ctx.Done() == nil {
		return func() {}, nil
	}
	var mu sync.Mutex
	active := true
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if active {
			_ = set(time.Unix(1, 0)) // a time long past: calls in progress return
		}
	})
	return func() {
		mu.Lock()
		active = false
		mu.Unlock()
		stop()
		_ = set(time.Time{})
	}, nil
}
