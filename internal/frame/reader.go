package frame

import (
	"io"
	"sync/atomic"

	"github.com/gobwas/ws"

	"github.com/ginws/ginws/internal/pool"
)

// Source is what a Reader reads frames from: a buffered reader that can
// peek at a frame header and, for a control frame, its payload too (at
// most MaxHeaderSize+MaxControlPayload bytes). *bufio.Reader is one.
type Source interface {
	io.Reader
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	Buffered() int
}

// Controller receives every valid control frame read while looking for
// data. The payload is unmasked and valid only during the call; for a
// close frame it has already passed ParseClose. A non-nil error stops the
// Reader, which returns that error from then on. It is an interface, not
// a func field, so a connection can hand itself over without allocating a
// method value at every upgrade.
type Controller interface {
	Control(op ws.OpCode, payload []byte) error
}

// ControlFunc is a function used as a Controller.
type ControlFunc func(op ws.OpCode, payload []byte) error

// Control calls f.
func (f ControlFunc) Control(op ws.OpCode, payload []byte) error { return f(op, payload) }

// Reader reads data messages from a stream of frames, enforcing the
// protocol as it goes. Control frames found between or inside messages
// are validated and handed to OnControl. Payloads are unmasked in place in
// the caller's buffer. A Reader is not safe for concurrent use.
type Reader struct {
	br Source

	// Limit caps the size of one message in bytes, checked from each frame
	// header before its payload is read. Zero or less means no limit.
	Limit int64
	// Client flips the masking rule: frames must arrive unmasked.
	Client bool
	// RSV holds the reserved bits an extension has negotiated (RSV1 for
	// permessage-deflate). Any other reserved bit is a violation.
	RSV byte
	// Inflate makes the Reader inflate the messages that permessage-deflate
	// (RFC 7692) compressed, those with RSV1 on their first frame (RSV must
	// allow RSV1): Read returns the inflated bytes, Limit caps them (and
	// the compressed size, with a little slack for DEFLATE's own framing),
	// text is checked on them, and data that does not inflate fails with
	// ErrBadCompressed. Off, compressed payloads are returned as they are.
	Inflate bool
	// NoContextTakeover tells an inflating Reader that the peer compresses
	// every message on its own (client_no_context_takeover was agreed), so
	// nothing is kept between messages. Otherwise the Reader keeps the last
	// 32 KiB it inflated (the LZ77 window the peer may refer back to).
	NoContextTakeover bool
	// OnControl receives control frames; nil ignores them.
	OnControl Controller

	progress atomic.Uint64 // frame headers and payload reads, for liveness checks from other goroutines

	hdr  ws.Header
	left int64 // payload bytes left in the current frame
	pos  int   // offset into the current frame, for the mask
	size int64
	err  error
	// The small fields share one word.
	op         ws.OpCode
	open       bool // a data message is being read
	compressed bool
	text       UTF8
	// permessage-deflate: inflating is set while a compressed message has
	// inflated output left (its frames may all have been read already).
	inflating bool

	inflated int64     // bytes inflated of the current message
	inf      *inflater // pooled, held only while a message is inflated
	win      window    // context takeover: the last 32 KiB inflated
}

// NewReader reads frames from br.
func NewReader(br Source) *Reader { return &Reader{br: br} }

// Reset points the Reader at br and clears all state, keeping the options.
func (r *Reader) Reset(br Source) {
	r.progress.Store(0)
	r.br, r.hdr, r.left, r.pos, r.op, r.open, r.size, r.compressed, r.err = br, ws.Header{}, 0, 0, 0, false, 0, false, nil
	r.text.Reset()
	r.putInflater()
	r.inflating, r.inflated = false, 0
	r.win.reset()
}

// Release gives back what an inflating Reader holds: the pooled
// decompressor of a message left half read, and the window. The Reader
// fails every call after it; use it when the connection has ended.
func (r *Reader) Release() {
	r.putInflater()
	r.inflating = false
	r.win = window{}
	r.fail(errReleased)
}

// Progress counts the frame headers and the reads of payload so far: it
// changes whenever bytes of the peer's frames are taken in, also inside a
// long frame that arrives slowly. It is safe to call from any goroutine.
func (r *Reader) Progress() uint64 { return r.progress.Load() }

// Err is the error that stopped the Reader, if any.
func (r *Reader) Err() error { return r.err }

// Open reports whether a data message has been started and not read to
// its end (for a compressed message: not inflated to its end).
func (r *Reader) Open() bool { return r.open || r.inflating }

// Opcode is the type of the current message (text or binary).
func (r *Reader) Opcode() ws.OpCode { return r.op }

// Compressed reports whether the current message has RSV1 set on its
// first frame (permessage-deflate).
func (r *Reader) Compressed() bool { return r.compressed }

func (r *Reader) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}

// check passes err on, making it sticky when it is a violation. I/O errors
// from reads that consumed nothing (timeouts, say) leave the Reader able
// to go on.
func (r *Reader) check(err error) error {
	if r.err != nil {
		return r.err
	}
	if _, ok := err.(*Error); ok {
		r.err = err
	}
	return err
}

// Left is the number of payload bytes left in the current frame (as
// they are on the wire: compressed, for a compressed message).
func (r *Reader) Left() int64 { return r.left }

// readHeader reads and checks the next frame header. Control frames are
// consumed whole and dispatched; ctrl reports that one was.
func (r *Reader) readHeader() (ctrl bool, err error) {
	b, err := r.br.Peek(2)
	if err != nil {
		if len(b) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return false, err
	}
	size := headerSizeFrom(b[0], b[1])
	if b, err = r.br.Peek(size); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return false, err
	}
	h, _, err := parseHeader(b)
	if err != nil {
		return false, err
	}
	// The rules are applied first: a violation in the header of a control
	// frame fails at once, not once a payload that may never come is in.
	rerr := r.rules(h)
	if rerr == nil && h.OpCode.IsControl() {
		// A valid control frame (at most 131 bytes) is taken whole or not
		// at all: a deadline that passes before its last byte leaves it
		// unread, and the next call starts it again.
		if _, err := r.br.Peek(size + int(h.Length)); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return false, err
		}
	}
	_, _ = r.br.Discard(size)
	r.progress.Add(1)
	if rerr != nil {
		return false, rerr
	}
	if h.OpCode.IsControl() {
		return true, r.control(h)
	}
	r.hdr, r.left, r.pos = h, h.Length, 0
	return false, nil
}

// check applies every rule that can be decided from a header alone.
func (r *Reader) rules(h ws.Header) error {
	if h.Masked == r.Client {
		if r.Client {
			return ErrMasked
		}
		return ErrUnmasked
	}
	if h.Rsv&^r.RSV != 0 {
		return ErrReservedBits
	}
	switch h.OpCode {
	case ws.OpContinuation:
		if !r.open {
			return ErrUnexpectedContinuation
		}
		if h.Rsv&RSV1 != 0 {
			return ErrCompressedControl
		}
	case ws.OpText, ws.OpBinary:
		if r.open {
			return ErrExpectedContinuation
		}
	case ws.OpClose, ws.OpPing, ws.OpPong:
		if h.Length > MaxControlPayload {
			return ErrControlTooLong
		}
		if !h.Fin {
			return ErrControlFragmented
		}
		if h.Rsv&RSV1 != 0 {
			return ErrCompressedControl
		}
		return nil
	default:
		return ErrReservedOpcode
	}
	if limit := r.Limit; limit > 0 {
		if r.Inflate && (h.Rsv&RSV1 != 0 || h.OpCode == ws.OpContinuation && r.compressed) {
			limit = wireLimit(limit)
		}
		// h.Length + r.size, without overflowing: both are at most MaxInt64.
		if h.Length > limit || h.OpCode == ws.OpContinuation && r.size > limit-h.Length {
			return ErrMessageTooBig
		}
	}
	return nil
}

// control is kept out of line: readHeader's frame is on the stack of
// every idle connection.
//
//go:noinline
func (r *Reader) control(h ws.Header) error {
	// The payload is read into a pooled buffer (a stack array would escape
	// through the Source interface), so no Reader carries 125 bytes for
	// the control frames it rarely gets.
	buf := pool.Get(MaxControlPayload)
	defer pool.Put(buf)
	p := (*buf)[:h.Length]
	if _, err := io.ReadFull(r.br, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return r.fail(err) // readHeader had it all in hand: cannot happen
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	if h.OpCode == ws.OpClose {
		if _, _, err := ParseClose(p); err != nil {
			return err
		}
	}
	if r.OnControl == nil {
		return nil
	}
	if err := r.OnControl.Control(h.OpCode, p); err != nil {
		return r.fail(err)
	}
	return nil
}

// Advance reads one frame while no message is open. It returns true when
// that frame starts a data message, false after a control frame.
func (r *Reader) Advance() (started bool, err error) {
	if r.err != nil {
		return false, r.err
	}
	ctrl, err := r.readHeader()
	if err != nil {
		return false, r.check(err)
	}
	if ctrl {
		return false, nil
	}
	r.open, r.op, r.size = true, r.hdr.OpCode, r.hdr.Length
	r.compressed = r.hdr.Rsv&RSV1 != 0
	r.inflating, r.inflated = r.compressed && r.Inflate, 0
	r.text.Reset()
	return true, nil
}

// NextMessage discards what is left of the current message and reads up
// to the first frame of the next data message. A compressed message is
// inflated to its end on the way (its bytes are part of the window).
func (r *Reader) NextMessage() (ws.OpCode, error) {
	if r.open || r.inflating {
		if err := r.Discard(); err != nil {
			return 0, err
		}
	}
	for {
		started, err := r.Advance()
		if err != nil {
			return 0, err
		}
		if started {
			return r.op, nil
		}
	}
}

// Discard reads what is left of the current message, if one is open,
// and drops it.
func (r *Reader) Discard() error {
	var scratch [512]byte
	for r.open || r.inflating {
		if _, err := r.Read(scratch[:]); err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// Read reads payload of the current message, across its fragments and any
// control frames between them, and returns io.EOF at its end. A message
// compressed with permessage-deflate is inflated when Inflate is set.
func (r *Reader) Read(p []byte) (int, error) {
	if r.inflating {
		return r.inflate(p)
	}
	return r.readRaw(p)
}

// readRaw reads payload as it is on the wire (unmasked).
func (r *Reader) readRaw(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if !r.open {
			return 0, io.EOF
		}
		if r.left == 0 {
			if r.hdr.Fin {
				r.open = false
				if r.op == ws.OpText && !r.compressed && !r.text.Complete() {
					return 0, r.fail(ErrInvalidUTF8)
				}
				return 0, io.EOF
			}
			ctrl, err := r.readHeader()
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF // the stream ended inside the message
				}
				return 0, r.check(err)
			}
			if !ctrl {
				r.size += r.hdr.Length
			}
			continue
		}
		if len(p) == 0 {
			return 0, nil
		}
		if int64(len(p)) > r.left {
			p = p[:r.left]
		}
		n, err := r.br.Read(p)
		if n > 0 {
			if r.hdr.Masked {
				ws.Cipher(p[:n], r.hdr.Mask, r.pos)
			}
			r.pos += n
			r.left -= int64(n)
			r.progress.Add(1)
			if r.op == ws.OpText && !r.compressed && !r.text.Write(p[:n]) {
				return 0, r.fail(ErrInvalidUTF8)
			}
			if r.left == 0 && r.hdr.Fin {
				r.open = false
				if r.op == ws.OpText && !r.compressed && !r.text.Complete() {
					return 0, r.fail(ErrInvalidUTF8)
				}
				return n, io.EOF
			}
			return n, nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, err
		}
	}
}

// Buffered reports whether the bytes already buffered begin the next
// data message and hold some of it: its complete header and at least one
// payload byte, or all of an empty final frame. NextMessage and the first
// Read then return without waiting for more input. Compressed messages
// do not count: inflating a few bytes may need more.
func (r *Reader) Buffered() bool {
	if r.err != nil || r.open || r.inflating {
		return false
	}
	n := r.br.Buffered()
	if n < 2 {
		return false
	}
	b, _ := r.br.Peek(n)
	h, size, err := parseHeader(b)
	if err != nil || size == 0 || h.Rsv != 0 {
		return false
	}
	if h.OpCode != ws.OpText && h.OpCode != ws.OpBinary {
		return false
	}
	if h.Length == 0 {
		return h.Fin
	}
	return n > size
}

// Between reports whether a data message is open and every byte of its
// frames so far has been read: what comes next is a frame header (a
// control frame, or the message's next fragment). A Read with an empty p
// then reads on to the next payload byte, or to the message's end (io.EOF).
// Compressed messages do not count: inflated bytes may be left.
func (r *Reader) Between() bool {
	return r.err == nil && r.open && !r.inflating && r.left == 0
}

// Readable reports whether the open message's next Read returns without
// waiting for more input: payload of its frame is buffered, or the frame
// is its last and has been read whole. Compressed messages do not count.
func (r *Reader) Readable() bool {
	if r.err != nil || !r.open || r.compressed {
		return false
	}
	if r.left == 0 {
		return r.hdr.Fin
	}
	return r.br.Buffered() > 0
}
