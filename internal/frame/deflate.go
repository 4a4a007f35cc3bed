package frame

// permessage-deflate (RFC 7692): inflating messages as the Reader reads
// them, and compressing messages to send. Both sides use compress/flate;
// decompressors and compressors come from pools and are held only while a
// message is being inflated or compressed, except a Compressor a
// connection keeps for server context takeover.

import (
	"compress/flate"
	"errors"
	"io"
	"math"
	"sync"

	"github.com/gobwas/ws"
)

// WindowSize is the LZ77 window of DEFLATE: how far back compressed data
// may refer, and so what an endpoint keeps between messages when the peer
// uses context takeover.
const WindowSize = 32 << 10

// inflateTail is appended to every compressed message before it is
// inflated: the 00 00 ff ff that RFC 7692 section 7.2.2 asks for (the
// sender removed it from the empty stored block that ends its flush), then
// an empty final stored block, so a well-formed message ends the DEFLATE
// stream and the decompressor reports io.EOF exactly at its end.
var inflateTail = [...]byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// wireLimit is how many compressed bytes a message whose inflated size is
// capped at limit may take on the wire: DEFLATE adds 5 bytes per stored
// block of up to 64 KiB to data that does not compress, and a little at
// the end; the slack covers that generously.
func wireLimit(limit int64) int64 {
	if limit > (math.MaxInt64-1024)/2 {
		return math.MaxInt64
	}
	return limit + limit/64 + 1024
}

// inflater is a decompressor with its input: the payload of the message
// being read, then inflateTail. Pooled.
type inflater struct {
	fl   io.ReadCloser // compress/flate's decompressor, a flate.Resetter
	src  inflateSource
	dict []byte // WindowSize bytes to lay out a wrapped window, made on first need
}

var inflaters sync.Pool

// inflateSource feeds the decompressor. It implements io.ByteReader, so
// compress/flate reads from it directly (no bufio.Reader of its own, which
// would read past the message), and it reads the payload in chunks, so
// ReadByte is cheap.
type inflateSource struct {
	r        *Reader
	buf      [2048]byte
	pos, end int
	rawEOF   bool  // the payload has been read to its end
	tail     int   // bytes of inflateTail handed out
	err      error // the read error that stopped the payload
}

func (s *inflateSource) fill() error {
	if s.err != nil {
		return s.err
	}
	s.pos, s.end = 0, 0
	for !s.rawEOF {
		n, err := s.r.readRaw(s.buf[:])
		s.end = n
		switch {
		case err == io.EOF:
			s.rawEOF = true
		case err != nil:
			s.err = err
			return err
		}
		if n > 0 {
			return nil
		}
	}
	if s.tail == len(inflateTail) {
		return io.EOF // past the final block: the data ended inside a block
	}
	s.end = copy(s.buf[:], inflateTail[s.tail:])
	s.tail += s.end
	return nil
}

func (s *inflateSource) ReadByte() (byte, error) {
	if s.pos == s.end {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	b := s.buf[s.pos]
	s.pos++
	return b, nil
}

func (s *inflateSource) Read(p []byte) (int, error) {
	if s.pos == s.end {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf[s.pos:s.end])
	s.pos += n
	return n, nil
}

// getInflater takes a decompressor for the message r starts to inflate,
// primed with the window when the peer uses context takeover.
func (r *Reader) getInflater() *inflater {
	f, _ := inflaters.Get().(*inflater)
	if f == nil {
		f = new(inflater)
		f.fl = flate.NewReader(&f.src)
	}
	f.src = inflateSource{r: r}
	var dict []byte
	if !r.NoContextTakeover {
		dict = r.win.ordered(&f.dict)
	}
	_ = f.fl.(flate.Resetter).Reset(&f.src, dict)
	return f
}

func (r *Reader) putInflater() {
	if r.inf != nil {
		r.inf.src.r = nil
		inflaters.Put(r.inf)
		r.inf = nil
	}
}

// inflate is Read for a compressed message.
func (r *Reader) inflate(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.inf == nil {
		r.inf = r.getInflater()
	}
	if r.Limit > 0 {
		// Ask for one byte past the limit at most: a bomb is stopped
		// there, not inflated whole.
		if room := r.Limit - r.inflated; int64(len(p)) > room {
			p = p[:room+1]
		}
	}
	n, err := r.inf.fl.Read(p)
	// Once the message's frames have all been read, the rest inflates
	// without waiting for the peer: go on until p is full or the message
	// ends, so that a caller handed the last bytes learns of the end too
	// (a message left open keeps the control pump from reading pings and
	// the close).
	for err == nil && !r.open {
		m, e := r.inf.fl.Read(p[n:])
		if e != nil && e != io.EOF && n > 0 {
			n += m // the error is the decompressor's, sticky: the next call reports it
			break
		}
		n, err = n+m, e
		if m == 0 && e == nil {
			break // p is full and more is to come
		}
	}
	if n > 0 {
		r.inflated += int64(n)
		if r.Limit > 0 && r.inflated > r.Limit {
			return 0, r.failInflate(ErrMessageTooBig)
		}
		if r.op == ws.OpText && !r.text.Write(p[:n]) {
			return 0, r.failInflate(ErrInvalidUTF8)
		}
		if !r.NoContextTakeover {
			r.win.write(p[:n])
		}
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		if err := r.endInflate(); err != nil {
			return 0, err
		}
		return n, io.EOF
	}
	src := r.inf.src.err
	r.putInflater()
	r.inflating = false
	switch {
	case r.err != nil: // a violation or a close frame met between fragments
		return 0, r.err
	case src != nil:
		// A timeout too: the decompressor cannot resume after an error.
		return 0, r.fail(src)
	}
	return 0, r.fail(ErrBadCompressed)
}

// endInflate completes a message whose DEFLATE stream has ended: what the
// payload still holds (only bytes a peer put after a final block of its
// own) is discarded.
func (r *Reader) endInflate() error {
	src := &r.inf.src
	for !src.rawEOF {
		if _, err := r.readRaw(src.buf[:]); err == io.EOF {
			break
		} else if err != nil {
			r.putInflater()
			r.inflating = false
			return r.fail(err)
		}
	}
	r.putInflater()
	r.inflating = false
	if r.op == ws.OpText && !r.text.Complete() {
		return r.fail(ErrInvalidUTF8)
	}
	return nil
}

func (r *Reader) failInflate(err error) error {
	r.putInflater()
	r.inflating = false
	return r.fail(err)
}

// window is the last WindowSize bytes inflated, for a peer that uses
// context takeover. It grows with what arrives, up to WindowSize; then it
// is a ring whose oldest byte is at head.
type window struct {
	b    []byte
	head int
}

func (w *window) reset() { w.b, w.head = w.b[:0], 0 }

func (w *window) write(p []byte) {
	if len(p) >= WindowSize {
		if cap(w.b) < WindowSize {
			w.b = make([]byte, WindowSize)
		}
		w.b, w.head = w.b[:WindowSize], 0
		copy(w.b, p[len(p)-WindowSize:])
		return
	}
	if n := len(w.b); n < WindowSize {
		k := min(WindowSize-n, len(p))
		if cap(w.b) < n+k {
			nb := make([]byte, n, min(WindowSize, max(2*cap(w.b), n+k, 1<<10)))
			copy(nb, w.b)
			w.b = nb
		}
		w.b = append(w.b, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(w.b[w.head:], p)
		p = p[k:]
		if w.head += k; w.head == WindowSize {
			w.head = 0
		}
	}
}

// ordered returns the window oldest byte first, laid out in *scratch when
// the ring has wrapped.
func (w *window) ordered(scratch *[]byte) []byte {
	if w.head == 0 {
		return w.b
	}
	if *scratch == nil {
		*scratch = make([]byte, WindowSize)
	}
	s := *scratch
	n := copy(s, w.b[w.head:])
	copy(s[n:], w.b[:w.head])
	return s
}

// Compressor compresses messages for permessage-deflate. One from
// GetCompressor compresses every message on its own (no context
// takeover); one from NewCompressor, kept by a connection, compresses each
// message with the ones before it as context (server context takeover).
// A Compressor is not safe for concurrent use.
type Compressor struct {
	fw    *flate.Writer
	out   appendWriter
	level int
}

// appendWriter is where the flate.Writer writes: it appends to b, and
// stops the compression with errTooLong past max bytes (max < 0: no bound).
type appendWriter struct {
	b   []byte
	max int
}

var errTooLong = errors.New("frame: compressed message longer than allowed")

func (w *appendWriter) Write(p []byte) (int, error) {
	if w.max >= 0 && len(w.b)+len(p) > w.max {
		return 0, errTooLong
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// ValidLevel reports whether level is one compress/flate accepts
// (flate.HuffmanOnly to flate.BestCompression, or flate.DefaultCompression).
func ValidLevel(level int) bool {
	return level >= flate.HuffmanOnly && level <= flate.BestCompression
}

// compressors pools Compressors by level + 2.
var compressors [flate.BestCompression + 3]sync.Pool

// NewCompressor returns a Compressor at level (see ValidLevel) whose
// context carries over from one message to the next. It costs what a
// flate.Writer costs: about 1.2 MiB at flate.BestSpeed, 800 KiB at other
// levels.
func NewCompressor(level int) *Compressor {
	z := &Compressor{level: level}
	fw, err := flate.NewWriter(&z.out, level)
	if err != nil {
		panic(err) // the level was not checked with ValidLevel
	}
	z.fw = fw
	return z
}

// GetCompressor returns a pooled Compressor at level, reset: it compresses
// the next message on its own. Give it back with PutCompressor.
func GetCompressor(level int) *Compressor {
	if z, _ := compressors[level+2].Get().(*Compressor); z != nil {
		z.fw.Reset(&z.out)
		return z
	}
	return NewCompressor(level)
}

// PutCompressor returns z to the pool of its level (a connection's own
// Compressor too, once the connection has ended).
func PutCompressor(z *Compressor) {
	z.out.b = nil
	compressors[z.level+2].Put(z)
}

// Compress appends p compressed as one message of permessage-deflate
// (RFC 7692 section 7.2.1: flushed, without the final 00 00 ff ff) to dst.
// With limit >= 0, it gives up once the compressed bytes would exceed limit,
// and returns dst and false; the Compressor must then be reset (a pooled
// one is, by GetCompressor), so only a Compressor without context
// takeover may be given a bound.
func (z *Compressor) Compress(dst, p []byte, limit int) ([]byte, bool) {
	z.out.b, z.out.max = dst, -1
	if limit >= 0 {
		z.out.max = len(dst) + limit + 4 // the tail is written, then cut
	}
	_, err := z.fw.Write(p)
	if err == nil {
		err = z.fw.Flush()
	}
	out := z.out.b
	z.out.b = nil
	if err != nil {
		return dst, false
	}
	// A flush ends with an empty stored block: ... 00 00 ff ff.
	return out[:len(out)-4], true
}
