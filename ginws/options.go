package ginws

import (
	"compress/flate"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/internal/frame"
)

// DefaultMaxPayload is the largest message a connection accepts unless
// MaxPayload says otherwise: 16 MiB. Memory grows with the bytes that
// actually arrive, never with a length a frame header claims.
const DefaultMaxPayload = 16 << 20

// DefaultCloseTimeout bounds how long a close handshake waits for the peer.
const DefaultCloseTimeout = 5 * time.Second

// Option configures a Server (for all its routes) or one route (on top
// of the Server's options). Options never change the values passed in.
type Option func(*config)

// config is cloned for every route, so no option reaches another route.
type config struct {
	maxPayload     int64
	objectMode     bool
	streamText     bool
	originPatterns []string
	checkOrigin    func(c *gin.Context) bool
	verify         func(c *gin.Context) bool
	subprotocols   []string
	selectProto    func(c *gin.Context, offered []string) string
	errorHandler   func(err error, conn *Conn, c *gin.Context)
	defaultHandler Handler
	httpHandlers   []gin.HandlerFunc
	closeTimeout   time.Duration
	pingInterval   time.Duration
	idleTimeout    time.Duration
	sendQueue      int
	sendQueueBytes int
	deflate        *deflateConfig // nil: no permessage-deflate
	route          string         // set by Handle
}

func defaultConfig() config {
	return config{
		maxPayload:     DefaultMaxPayload,
		closeTimeout:   DefaultCloseTimeout,
		sendQueue:      DefaultSendQueue,
		sendQueueBytes: DefaultSendQueueBytes,
	}
}

func (c *config) clone(opts []Option) *config {
	n := *c
	n.originPatterns = append([]string(nil), c.originPatterns...)
	n.subprotocols = append([]string(nil), c.subprotocols...)
	n.httpHandlers = nil // route-only
	n.route = ""
	for _, o := range opts {
		o(&n)
	}
	return &n
}

// MaxPayload caps the size of one incoming message in bytes. A larger
// message closes the connection with 1009 and reads fail with
// ErrMessageTooBig. n <= 0 restores DefaultMaxPayload.
func MaxPayload(n int64) Option {
	return func(c *config) {
		if n <= 0 {
			n = DefaultMaxPayload
		}
		c.maxPayload = n
	}
}

// ObjectMode sets how the Conn's byte stream (Read, Write) treats
// messages. On: every Write is exactly one message and a Read never
// returns bytes of two messages; a Read whose buffer holds the message
// returns it whole, waiting for the rest of a message that has begun (a
// larger one comes in several Reads). An empty message gives Read
// nothing to return, so Read skips it; WriteTo writes it (to a *Conn, as
// an empty message). Off (the default): Reads run across message
// boundaries and return what has arrived. Either way a Write is sent at
// once.
func ObjectMode(on bool) Option { return func(c *config) { c.objectMode = on } }

// StreamText makes the byte stream send text messages instead of binary
// (the plugin's setEncoding('utf8')). In byte-stream mode an incomplete
// UTF-8 sequence at the end of a Write is held until the Write that
// completes it; in object mode a Write that is not valid UTF-8 fails.
func StreamText() Option { return func(c *config) { c.streamText = true } }

// OriginPatterns allows browser upgrades from these origins in addition to
// the same origin. Patterns match the Origin's host (and port) with
// path.Match syntax, e.g. "example.com", "*.example.com", "localhost:*".
func OriginPatterns(patterns ...string) Option {
	return func(c *config) { c.originPatterns = append(c.originPatterns, patterns...) }
}

// CheckOrigin replaces the origin check. It runs for every upgrade that
// carries an Origin header; return false to answer 403. Returning true
// always switches off the protection against cross-site WebSocket
// hijacking: only do that on routes that need no cookies or credentials.
func CheckOrigin(f func(c *gin.Context) bool) Option {
	return func(c *config) { c.checkOrigin = f }
}

// VerifyClient accepts or rejects an upgrade after the handshake checks
// and the origin check (the plugin's verifyClient). Return false to
// reject: if f wrote no response (for example with c.AbortWithStatusJSON),
// ginws answers 403. A rejected request is never hijacked.
func VerifyClient(f func(c *gin.Context) bool) Option {
	return func(c *config) { c.verify = f }
}

// Subprotocols lists the subprotocols the server speaks, in its order of
// preference; the first one the client also offers is chosen.
func Subprotocols(protocols ...string) Option {
	return func(c *config) { c.subprotocols = append(c.subprotocols[:0:0], protocols...) }
}

// SelectSubprotocol chooses the subprotocol from the client's offer (the
// plugin's handleProtocols). Return "" to choose none; returning a value
// the client did not offer is treated as "".
func SelectSubprotocol(f func(c *gin.Context, offered []string) string) Option {
	return func(c *config) { c.selectProto = f }
}

// ErrorHandler is called when a handler returns an error or panics (a
// panic arrives as a *PanicError), and likewise for the function set with
// Conn.OnMessage, for which c is nil. The connection is still open when f
// runs; whatever f leaves open is closed with 1011 afterwards. The
// default logs to gin.DefaultErrorWriter.
func ErrorHandler(f func(err error, conn *Conn, c *gin.Context)) Option {
	return func(c *config) { c.errorHandler = f }
}

// DefaultHandler serves upgrade requests that reach Server.Middleware for
// a route that has no WebSocket handler, or for no route at all (the
// plugin's handle option and its wildcard route). A Server option only.
func DefaultHandler(h Handler) Option { return func(c *config) { c.defaultHandler = h } }

// HTTP serves plain (non-upgrade) requests on a WebSocket route with
// these handlers, so one path answers both (the plugin's handler plus
// wsHandler). They run as the rest of the route's gin chain, so one of
// them can wrap those after it with c.Next(). Without it a plain GET
// answers 404. A route option only.
func HTTP(handlers ...gin.HandlerFunc) Option {
	return func(c *config) { c.httpHandlers = append(c.httpHandlers, handlers...) }
}

// CloseTimeout bounds how long a close handshake waits for the peer
// before the TCP connection is dropped. d <= 0 restores
// DefaultCloseTimeout.
func CloseTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			d = DefaultCloseTimeout
		}
		c.closeTimeout = d
	}
}

// PingInterval makes ginws ping the peer every d while the connection is
// open (0, the default, sends none); with an IdleTimeout under twice d, it
// pings every half IdleTimeout instead, so that a live peer always has a
// ping to answer before it would be dropped. Pongs are read by whoever
// reads, or by ginws itself when the handler is not reading. Without
// IdleTimeout, a ping that the connection cannot send within its interval
// ends it; with IdleTimeout, which judges the peer, a ping that finds the
// send buffer full of what the peer has yet to take in is skipped. Costs
// one timer per connection, no goroutine.
func PingInterval(d time.Duration) Option { return func(c *config) { c.pingInterval = max(d, 0) } }

// IdleTimeout drops a connection when nothing at all (data, ping, pong,
// or bytes of a long frame still arriving) has come from the peer for d
// (0, the default, never does). A peer taking in a long message cannot
// answer pings until it has it all, so two things also count as signs of
// life: a write in progress (its own
// deadline or context bounds it), and, on Linux over TCP, the peer
// acknowledging bytes that waited in the send queue after the write
// returned. A peer whose application hangs acknowledges no more than its
// receive buffer holds, so it is still dropped. Together with PingInterval
// shorter than d, IdleTimeout finds peers that vanished without closing.
// The handler's read then fails with a *CloseError with
// StatusAbnormalClosure that matches ErrIdleTimeout; a close frame with
// 1001 is sent if the socket still takes it.
func IdleTimeout(d time.Duration) Option { return func(c *config) { c.idleTimeout = max(d, 0) } }

// DefaultDeflateThreshold is the size from which messages are compressed
// unless DeflateOptions.Threshold says otherwise.
const DefaultDeflateThreshold = 512

// DeflateOptions configures permessage-deflate (RFC 7692, see
// Compression). Its zero value is the setting for servers with many
// connections: nothing compression-related is held by an idle connection
// except, for a client that compresses with context takeover, the last
// 32 KiB it sent.
type DeflateOptions struct {
	// Threshold is the size in bytes from which outgoing messages are
	// compressed; smaller ones go out as they are, which is cheaper and,
	// for a few hundred bytes, hardly longer. 0 means
	// DefaultDeflateThreshold; 1 compresses every message but empty ones.
	Threshold int

	// Level is the compress/flate level of outgoing messages, from
	// flate.HuffmanOnly (-2) to flate.BestCompression (9), or
	// flate.DefaultCompression (-1). 0, or any other value, means
	// flate.BestSpeed, the default: at levels 2 to 9, compressing a
	// message without context takeover also clears the compressor's
	// 640 KiB of match tables, which costs more than most messages.
	Level int

	// ServerContextTakeover lets the server compress each message with its
	// earlier ones as context, when the client did not offer
	// server_no_context_takeover. Small messages that repeat each other
	// (JSON with the same keys, say) then shrink far more, at a price:
	// such a connection keeps its own compressor from its first
	// compressed message to its end, about 1.2 MiB at flate.BestSpeed and
	// 800 KiB at other levels, and Broadcast compresses separately for it.
	// Off (the default), the server answers server_no_context_takeover,
	// compresses every message on its own with a pooled compressor, and
	// Broadcast compresses a message once for all connections of the same
	// Level.
	ServerContextTakeover bool

	// ClientNoContextTakeover asks clients to compress every message on
	// its own (client_no_context_takeover). Otherwise, a client that uses
	// context takeover makes its connection keep the last 32 KiB it
	// inflated, the window the client's next messages may refer back to
	// (less while fewer bytes have arrived). Clients that offer
	// client_no_context_takeover themselves are taken at their word
	// either way.
	ClientNoContextTakeover bool
}

type deflateConfig struct {
	threshold      int
	level          int
	serverTakeover bool
	clientNoCtx    bool
}

// Compression turns on permessage-deflate (RFC 7692) with o: a client
// that offers it gets compressed messages from the threshold up, and may
// send compressed messages, which are inflated as they are read (the
// inflated size counts against MaxPayload; the compressed size may exceed
// it by about 1.6%). The first offer the server can honour is accepted;
// an offer with bad or repeated parameters is declined, and the upgrade
// goes on without compression. A client that limits the server's window
// (server_max_window_bits below 15) is sent Huffman-only compressed
// messages, which refer back to nothing.
//
// Memory: a compressor (flate.Writer, ~1.2 MiB) or decompressor (~45 KiB
// with its buffers) is taken from a pool for the length of one message and
// given back, so it costs per message in flight, not per connection; what
// a connection keeps between messages is described in DeflateOptions
// (nothing, 32 KiB of window, or its own compressor). Off by default; see
// also Conn.SetCompression.
func Compression(o DeflateOptions) Option {
	d := &deflateConfig{
		threshold:      o.Threshold,
		level:          o.Level,
		serverTakeover: o.ServerContextTakeover,
		clientNoCtx:    o.ClientNoContextTakeover,
	}
	if d.threshold <= 0 {
		d.threshold = DefaultDeflateThreshold
	}
	if d.level == 0 || !frame.ValidLevel(d.level) {
		d.level = flate.BestSpeed
	}
	if d.level == flate.DefaultCompression {
		d.level = 6 // what compress/flate means by it; one pool per level
	}
	if d.level == flate.HuffmanOnly {
		d.serverTakeover = false // Huffman-only output refers back to nothing
	}
	return func(c *config) { c.deflate = d }
}

// NoCompression turns permessage-deflate off again, for a route of a
// Server that has Compression.
func NoCompression() Option { return func(c *config) { c.deflate = nil } }
