// Package ginws adds WebSocket routes to a Gin application: the Go
// counterpart of Node's fastify-websocket, built on github.com/gobwas/ws.
// A WebSocket endpoint is a route like any other, next to the HTTP
// routes, behind the same middleware.
//
//	r := gin.Default()
//	ginws.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
//		_, err := io.Copy(conn, conn) // a Conn is an io.ReadWriteCloser
//		return err
//	})
//	r.Run("127.0.0.1:8080")
//
// [Handle] registers on the [Default] server; [New] makes a [Server] of
// your own, with options shared by its routes, the set of its live
// connections (for [Server.Broadcast], [Server.Range], [Server.Count])
// and [Server.Shutdown]. [Server.Handle] takes an engine or any
// gin.RouterGroup, and options for that route on top of the Server's.
//
// # Handlers and the gin.Context
//
// A [Handler] runs after everything in front of the route: gin's
// middleware (authentication, rate limits, logging), then the upgrade
// checks in this order: [Server.Shutdown] in progress (503), the RFC 6455
// handshake rules (400 or 426), the origin check (403, see
// [OriginPatterns] and [CheckOrigin]), [VerifyClient] (403 or its own
// response), the subprotocol choice ([Subprotocols],
// [SelectSubprotocol]). A request refused at any step gets an ordinary
// HTTP response and is never hijacked, nor is one for which middleware
// wrote a response without aborting. An accepted one is answered with
// 101 Switching Protocols, which carries the headers set before the
// upgrade (c.Header, http.SetCookie on c.Writer: a request id, a session
// cookie) except those the handshake writes itself and Content-Length,
// Transfer-Encoding and Trailer, which a 101 response must not carry.
//
// The handler runs in the request's own goroutine, so the *gin.Context
// and the values middleware set on it (c.Get, c.GetString, c.Param,
// c.Query) stay valid for the whole life of the connection. When the
// handler returns, the connection is closed: with 1000, or with 1011
// after it returned an error or panicked; the error (a panic as a
// [*PanicError]) goes to the [ErrorHandler], which by default logs to
// gin.DefaultErrorWriter. Errors that only tell how the connection ended
// ([*CloseError], [*ProtocolError], [ErrClosed], and the io.EOF with which
// the byte stream reads a normal close) are not reported. A
// panic never takes the server down.
//
// The calls that block take a context: pass c itself (it does not end
// while the handler runs), [Conn.Context] (done when the connection has
// ended, and carrying the request context's values) or a context with a
// timeout.
// Messages that arrive before the handler's first read are kept, so a
// handler may load a session before it reads.
//
// # The Conn: message socket and byte stream
//
// A [*Conn] is a message socket: [Conn.ReadMessage] reads a whole message
// into a buffer that is reused by the next read (copy what you keep),
// [Conn.NextReader] streams one too large to hold, [Conn.WriteMessage]
// sends one, [Conn.Ping] pings, [Conn.CloseWith] closes with a code and a
// reason. It is also an io.ReadWriteCloser byte stream over those
// messages, for io.Copy, bufio.Scanner, json.Decoder and the like:
// [Conn.Read] runs across message boundaries, [Conn.Write] sends one
// binary message at once (no flush), [Conn.Close] closes with 1000, and a
// normal close by the peer reads as io.EOF. [ObjectMode] keeps message
// boundaries in the stream (every Write is one message, a Read never
// mixes two); [StreamText] makes the stream send text messages.
//
// Connections can be found again: [Conn.Join] and [Conn.Leave] put one in
// rooms, [Conn.Set] and [Conn.Get] attach values, and a [Selector]
// ([ToAll], [ToRoute], [ToRoom], narrowed with [Selector.Where]) picks the
// connections for [Server.Broadcast], [Server.Range] and [Server.Count].
// Broadcast encodes the frame once and queues it to each connection; a
// slow peer falls behind in its own queue ([SendQueue]) and never holds up
// the others.
//
// # Concurrency
//
// One goroutine may read a Conn at a time (ReadMessage, NextReader, Read,
// WriteTo); any number may write (WriteMessage, Write, Ping, CloseWith,
// Close), concurrently with the reader and with each other. Writes are
// serialised and each message goes out whole. Pings are answered and the
// close handshake is completed by ginws, while the handler reads and also
// while it only writes. Server methods are safe for concurrent use, also
// while connections come and go.
//
// # Errors
//
// Reads report how the connection ended: a [*CloseError] with the peer's
// code and reason (or [StatusAbnormalClosure] when the connection was lost
// without a close frame), or a [*ProtocolError] for a rule the peer broke,
// after which ginws has closed with the code the rule calls for. Match
// them with errors.As, or read the code with [CloseStatus]; the class
// sentinels [ErrProtocol], [ErrInvalidUTF8] and [ErrMessageTooBig] match
// every rule of their class with errors.Is. Calls on a connection this
// side has closed return [ErrClosed] (net.ErrClosed) until the peer has
// answered the close, and the peer's [*CloseError] from then on, as after
// a close the peer began. A read whose
// context ends or whose deadline ([Conn.SetReadDeadline]) passes before a
// message has begun returns that error and leaves the connection usable;
// in the middle of a message, read or written, it drops the connection, as
// the rest of the message could not be told from a new one (the reader
// from NextReader and the byte stream outside object mode excepted: they
// go on where they stopped). The calls made once the connection has
// ended never return a timeout error, whatever timeout ended it: a loop
// that reads on after a timeout sees the end. A refused upgrade is
// answered with the status of its [*HandshakeError] (or 503 with
// [ErrShuttingDown], or 500 with an error matching http.ErrNotSupported
// when the response writer cannot be hijacked, as an
// httptest.ResponseRecorder cannot) and recorded with c.Error for gin's
// logger.
//
// # Options and memory
//
// Options given to [New] apply to every route of the Server; options given
// to [Server.Handle] apply to that route on top of them. An idle
// connection whose handler loops costs one goroutine, the request's own,
// with a stack of about 4 KiB (8 KiB behind middleware), and about 5 KiB
// of heap, most of it
// net/http's and gin's request state (BenchmarkIdleConns); an
// event-driven one (see [Conn.OnMessage]) costs neither the goroutine nor
// that state. Buffers for reading and writing come from pools while they
// hold bytes: an idle connection holds none. What the options add:
//
//   - [MaxPayload] (default [DefaultMaxPayload], 16 MiB) caps one incoming
//     message; over it the connection is closed with 1009. Memory follows
//     the bytes that arrive, never the length a frame header claims; the
//     message ReadMessage returned is held until the next read.
//   - [SendQueue] and [SendQueueBytes] (defaults [DefaultSendQueue] and
//     [DefaultSendQueueBytes]) bound each connection's broadcast queue, in
//     messages and in bytes; a queued message costs a pointer, its bytes
//     are shared by all the connections it goes to.
//   - [Compression] turns on permessage-deflate for clients that offer it.
//     A compressor (about 1.2 MiB) or decompressor (about 45 KiB) comes from
//     a pool for the length of one message; between messages a connection
//     keeps nothing, or the last 32 KiB the client sent when the client
//     compresses with context takeover, or a compressor of its own with
//     [DeflateOptions].ServerContextTakeover.
//   - [PingInterval] and [IdleTimeout] cost one timer per connection.
//   - [CloseTimeout] bounds every close handshake (default
//     [DefaultCloseTimeout], 5 s).
//   - [ObjectMode] and [StreamText] shape the byte stream and cost nothing
//     (StreamText holds at most 3 bytes of an incomplete UTF-8 sequence).
//   - [OriginPatterns], [CheckOrigin], [VerifyClient], [Subprotocols],
//     [SelectSubprotocol] decide the upgrade; [ErrorHandler],
//     [DefaultHandler] (with [Server.Middleware]) and [HTTP] decide who
//     serves what.
//
// # Goroutines
//
// Besides the request's goroutine, which runs the handler, ginws starts a
// goroutine only while there is work for it, and every one ends with the
// connection at the latest:
//
//   - the control-frame pump, while a handler only writes: after a write
//     (a keepalive ping too), once no read call is in progress and none has
//     returned for 50 ms, ginws reads pings, pongs and the close frame for
//     the handler, until the next message's payload, or the next fragment
//     of one the handler has read up to a frame's end (both left for the
//     handler), or the handler's next read call; for an event-driven
//     connection, the same while its OnMessage runs;
//   - the broadcast flusher, while the connection's broadcast queue holds
//     messages;
//   - the keepalive timers of [PingInterval] and [IdleTimeout], which run
//     a function for each tick and start no goroutine in between;
//   - during [Server.Shutdown], one goroutine per connection sends its
//     close frame, so the close handshakes run in parallel;
//   - for an event-driven connection ([Conn.OnMessage]), after its handler
//     has returned: on Linux, a worker goroutine while bytes it has
//     received are being read and handed to OnMessage (workers are shared
//     by the connections and end after a second without work), plus one
//     poller goroutine per Server while it watches any connection;
//     elsewhere, one goroutine per connection.
//
// A [Cluster] runs one publishing goroutine of its own, until its
// Shutdown.
//
// # Shutdown
//
// http.Server.Shutdown does not wait for hijacked connections. Register
// [Server.Shutdown] with http.Server.RegisterOnShutdown: it refuses new
// upgrades with 503, closes every connection with 1001 and waits for the
// handlers to return, or drops what is left when its context ends.
//
// # Security
//
// A browser upgrade from another site (an Origin whose host differs from
// the request's Host) is refused with 403 unless [OriginPatterns] or
// [CheckOrigin] allow it; requests without Origin come from non-browser
// clients and pass. Set ReadHeaderTimeout, ReadTimeout and MaxHeaderBytes
// on your http.Server so slow handshakes (and request bodies dribbled to
// HTTP routes) cannot hold goroutines; after the
// upgrade, every blocking call on a Conn takes a context or honours its
// deadlines, and a close handshake waits at most the close timeout.
//
// # Several instances
//
// A [Cluster] carries broadcasts to the Servers of other instances of
// the application through a message broker (a [Backplane]); adapters for
// Redis and NATS live in modules of their own.
//
// # Testing
//
// Package github.com/ginws/ginws/ginwstest dials WebSocket routes of a
// *gin.Engine in memory, without a port, through the same middleware and
// checks as a real request.
package ginws
