package conformance

// A deliberately low-level WebSocket client: it performs the opening
// handshake by hand and writes frames exactly as described by a frame value,
// including encodings a real client must never produce (unmasked frames,
// reserved bits and opcodes, non-minimal or oversized length fields). Frames
// sent by the server are parsed strictly: anything a conforming server must
// not send is reported as an error.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// maxServerFrame bounds what the client accepts from the server in one frame
// or message; the largest legitimate echo is 16 MiB.
const maxServerMessage = 32 << 20

// acceptGUID is the fixed GUID of RFC 6455 section 1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func opName(op byte) string {
	switch op {
	case opCont:
		return "continuation"
	case opText:
		return "text"
	case opBinary:
		return "binary"
	case opClose:
		return "close"
	case opPing:
		return "ping"
	case opPong:
		return "pong"
	}
	return fmt.Sprintf("op%#x", op)
}

// frame describes one frame to write. The zero value of the optional fields
// gives a well-formed, masked frame with a minimal length encoding.
type frame struct {
	fin     bool
	rsv     byte // RSV1..RSV3 as a 3-bit value (RSV1 is 4)
	op      byte // 4 bits
	payload []byte

	unmasked bool // send without the MASK bit and masking key
	zeroKey  bool // masked, but with the key 00 00 00 00

	// lenBits forces the length encoding: 7, 16 or 64. 0 means minimal.
	lenBits int
	// declared, when hasDeclared is set, is written as the length field
	// instead of len(payload) (the payload is still written as is). It is
	// always written with a 64-bit length field unless lenBits says otherwise.
	declared    uint64
	hasDeclared bool
}

func (f frame) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s fin=%v", opName(f.op), f.fin)
	if f.rsv != 0 {
		fmt.Fprintf(&b, " rsv=%d", f.rsv)
	}
	if f.unmasked {
		b.WriteString(" unmasked")
	}
	if f.hasDeclared {
		fmt.Fprintf(&b, " declared-len=%d", f.declared)
	}
	if f.lenBits != 0 {
		fmt.Fprintf(&b, " len-bits=%d", f.lenBits)
	}
	fmt.Fprintf(&b, " payload=%d", len(f.payload))
	return b.String()
}

// encode returns the frame's bytes on the wire. The payload is not modified.
func (f frame) encode() []byte {
	length := uint64(len(f.payload))
	if f.hasDeclared {
		length = f.declared
	}
	bits := f.lenBits
	if bits == 0 {
		switch {
		case f.hasDeclared:
			bits = 64
		case length <= 125:
			bits = 7
		case length <= 0xFFFF:
			bits = 16
		default:
			bits = 64
		}
	}
	out := make([]byte, 0, 14+len(f.payload))
	b0 := f.op & 0x0F
	b0 |= (f.rsv & 0x07) << 4
	if f.fin {
		b0 |= 0x80
	}
	var maskBit byte
	if !f.unmasked {
		maskBit = 0x80
	}
	switch bits {
	case 7:
		out = append(out, b0, maskBit|byte(length&0x7F))
	case 16:
		out = append(out, b0, maskBit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(length))
	case 64:
		out = append(out, b0, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, length)
	default:
		panic("frame.lenBits must be 0, 7, 16 or 64")
	}
	if f.unmasked {
		return append(out, f.payload...)
	}
	var key [4]byte
	if !f.zeroKey {
		// Unpredictability does not matter to a test client; speed does
		// (a 4 MiB message in 64-byte fragments takes 65536 keys).
		for key == [4]byte{} {
			binary.LittleEndian.PutUint32(key[:], mrand.Uint32())
		}
	}
	out = append(out, key[:]...)
	start := len(out)
	out = append(out, f.payload...)
	maskBytes(key, out[start:])
	return out
}

// maskBytes XORs b with the repeating 4-byte key (the payload starts at key
// offset 0). Eight bytes at a time, since megabytes go through here.
func maskBytes(key [4]byte, b []byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}

// wsConn is one raw client connection after a successful upgrade.
type wsConn struct {
	nc net.Conn
	br *bufio.Reader

	// Server message being reassembled.
	inMsg  bool
	msgOp  byte
	msgBuf []byte

	pending *event // pushed back by unread
}

// dialWS connects to addr, performs the opening handshake on path and
// verifies the server's 101 response.
func dialWS(addr, path string, timeout time.Duration) (*wsConn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := handshake(nc, addr, path, timeout)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func handshake(nc net.Conn, host, path string, timeout time.Duration) (*wsConn, error) {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	sum := sha1.Sum([]byte(key + acceptGUID))
	wantAccept := base64.StdEncoding.EncodeToString(sum[:])

	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	req := "GET " + path + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, fmt.Errorf("writing upgrade request: %w", err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	tp := textproto.NewReader(br)
	status, err := tp.ReadLine()
	if err != nil {
		return nil, fmt.Errorf("reading status line: %w", err)
	}
	proto, rest, _ := strings.Cut(status, " ")
	codeStr, _, _ := strings.Cut(rest, " ")
	if proto != "HTTP/1.1" {
		return nil, fmt.Errorf("status line %q: want HTTP/1.1", status)
	}
	if code, err := strconv.Atoi(codeStr); err != nil || code != 101 {
		return nil, fmt.Errorf("status line %q: want 101 Switching Protocols", status)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("reading response headers: %w", err)
	}
	if !headerHasToken(hdr.Values("Upgrade"), "websocket") {
		return nil, fmt.Errorf("Upgrade header %q: want websocket", hdr.Values("Upgrade"))
	}
	if !headerHasToken(hdr.Values("Connection"), "upgrade") {
		return nil, fmt.Errorf("Connection header %q: want upgrade", hdr.Values("Connection"))
	}
	if got := hdr.Values("Sec-Websocket-Accept"); len(got) != 1 || got[0] != wantAccept {
		return nil, fmt.Errorf("Sec-WebSocket-Accept %q: want %q", got, wantAccept)
	}
	// No extension or subprotocol was offered, so none may be selected
	// (RFC 6455 section 4.1, items 5 and 6 of the client's checks).
	if v := hdr.Values("Sec-Websocket-Extensions"); len(v) != 0 {
		return nil, fmt.Errorf("server selected extensions %q that were not offered", v)
	}
	if v := hdr.Values("Sec-Websocket-Protocol"); len(v) != 0 {
		return nil, fmt.Errorf("server selected subprotocol %q that was not offered", v)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return &wsConn{nc: nc, br: br}, nil
}

func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

func (c *wsConn) Close() error { return c.nc.Close() }

// writeFrame writes one frame in a single Write call.
func (c *wsConn) writeFrame(f frame) error {
	_, err := c.nc.Write(f.encode())
	return err
}

// serverFrame is one frame as read from the server.
type serverFrame struct {
	fin     bool
	rsv     byte
	op      byte
	payload []byte
}

// protocolError marks a violation of RFC 6455 by the server (as opposed to
// an I/O error or a timeout).
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "server violates RFC 6455: " + e.msg }

func violation(format string, args ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, args...)}
}

// readFrame reads one frame and checks the rules every server frame must
// follow regardless of context.
func (c *wsConn) readFrame() (serverFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	f := serverFrame{
		fin: h[0]&0x80 != 0,
		rsv: (h[0] >> 4) & 0x07,
		op:  h[0] & 0x0F,
	}
	masked := h[1]&0x80 != 0
	length := uint64(h[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return f, err
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
		if length < 126 {
			return f, violation("non-minimal 16-bit length %d", length)
		}
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return f, err
		}
		length = binary.BigEndian.Uint64(ext[:])
		if length>>63 != 0 {
			return f, violation("64-bit length with the most significant bit set")
		}
		if length <= 0xFFFF {
			return f, violation("non-minimal 64-bit length %d", length)
		}
	}
	if masked {
		return f, violation("%s frame from the server is masked", opName(f.op))
	}
	if f.rsv != 0 {
		return f, violation("%s frame with RSV bits %03b (no extension negotiated)", opName(f.op), f.rsv)
	}
	switch f.op {
	case opCont, opText, opBinary, opClose, opPing, opPong:
	default:
		return f, violation("reserved opcode %#x", f.op)
	}
	if f.op >= 0x8 {
		if !f.fin {
			return f, violation("fragmented %s frame", opName(f.op))
		}
		if length > 125 {
			return f, violation("%s frame with %d-byte payload", opName(f.op), length)
		}
	}
	if length > maxServerMessage {
		return f, violation("%s frame of %d bytes (more than the client accepts)", opName(f.op), length)
	}
	f.payload = make([]byte, length)
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return f, err
	}
	return f, nil
}

type eventKind int

const (
	evMessage eventKind = iota
	evPing
	evPong
	evClose
)

// event is a complete message or a control frame received from the server.
type event struct {
	kind    eventKind
	op      byte // message opcode (text or binary)
	payload []byte
	// close frames
	hasCode bool
	code    int
	reason  string
}

func (e event) String() string {
	switch e.kind {
	case evMessage:
		return fmt.Sprintf("%s message of %d bytes %s", opName(e.op), len(e.payload), preview(e.payload))
	case evPing:
		return fmt.Sprintf("ping %s", preview(e.payload))
	case evPong:
		return fmt.Sprintf("pong %s", preview(e.payload))
	case evClose:
		if !e.hasCode {
			return "close with empty payload"
		}
		return fmt.Sprintf("close %d %q", e.code, e.reason)
	}
	return "?"
}

func preview(b []byte) string {
	const max = 24
	if len(b) <= max {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q...", b[:max])
}

// unread pushes an event back; the next readEvent returns it.
func (c *wsConn) unread(e event) { c.pending = &e }

// readEvent returns the next complete message or control frame. Data frames
// are reassembled; the fragmentation rules are checked on the server's side.
func (c *wsConn) readEvent() (event, error) {
	if c.pending != nil {
		e := *c.pending
		c.pending = nil
		return e, nil
	}
	for {
		f, err := c.readFrame()
		if err != nil {
			return event{}, err
		}
		switch f.op {
		case opText, opBinary:
			if c.inMsg {
				return event{}, violation("new %s frame while a fragmented message is in progress", opName(f.op))
			}
			c.inMsg, c.msgOp, c.msgBuf = true, f.op, f.payload
		case opCont:
			if !c.inMsg {
				return event{}, violation("continuation frame without a message in progress")
			}
			if len(c.msgBuf)+len(f.payload) > maxServerMessage {
				return event{}, violation("message longer than %d bytes", maxServerMessage)
			}
			c.msgBuf = append(c.msgBuf, f.payload...)
		case opPing:
			return event{kind: evPing, payload: f.payload}, nil
		case opPong:
			return event{kind: evPong, payload: f.payload}, nil
		case opClose:
			return parseClose(f.payload)
		}
		if f.fin {
			e := event{kind: evMessage, op: c.msgOp, payload: c.msgBuf}
			c.inMsg, c.msgBuf = false, nil
			// Large text is compared with the (valid) expected echo
			// instead of being validated again.
			if e.op == opText && len(e.payload) <= 1<<16 && !utf8.Valid(e.payload) {
				return e, violation("text message with invalid UTF-8")
			}
			return e, nil
		}
	}
}

func parseClose(p []byte) (event, error) {
	e := event{kind: evClose, payload: p}
	switch {
	case len(p) == 0:
		return e, nil
	case len(p) == 1:
		return e, violation("close frame with a 1-byte payload")
	}
	e.hasCode = true
	e.code = int(binary.BigEndian.Uint16(p))
	e.reason = string(p[2:])
	if !validCloseCode(e.code) {
		return e, violation("close frame with code %d, which may not be sent", e.code)
	}
	if !utf8.Valid(p[2:]) {
		return e, violation("close reason is not valid UTF-8")
	}
	return e, nil
}

// validCloseCode reports whether code may appear in a close frame: the
// codes defined by RFC 6455 section 7.4.1 that may be sent, the codes IANA
// registered since (1012-1014), and the ranges 3000-4999.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// awaitTCPClose waits for the server to close the TCP connection: a read
// must end with EOF (or a reset, which Linux reports when the server closes
// with unread input) without any further bytes, within d.
func (c *wsConn) awaitTCPClose(d time.Duration) error {
	if c.pending != nil {
		return violation("%s after the close frame", *c.pending)
	}
	if err := c.nc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	var buf [512]byte
	n, err := c.br.Read(buf[:])
	if n > 0 {
		return violation("%d more bytes after the close frame: % x", n, buf[:min(n, 16)])
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return nil
	case isTimeout(err):
		return fmt.Errorf("server did not close the TCP connection within %v of its close frame", d)
	case err == nil:
		return errors.New("read returned no data and no error")
	}
	return fmt.Errorf("waiting for the TCP close: %w", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closePayload builds a close frame payload: 2-byte code and reason.
func closePayload(code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return append(p, reason...)
}

// equalPayload is bytes.Equal, named for readability in the runner.
func equalPayload(a, b []byte) bool { return bytes.Equal(a, b) }
