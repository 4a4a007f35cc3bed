// Package stream turns a message socket into a duplex byte stream.
//
// In object mode every Write is exactly one message and a Read never
// returns bytes of two messages: it returns a message whole when p holds
// it (waiting for the rest of a message that has begun), and the first
// len(p) bytes otherwise, the rest coming with the next Reads. Otherwise
// Reads run across message boundaries as the bytes are already there,
// and each Write is sent at once, as one message, so io.Copy needs no
// flush.
package stream

import (
	"errors"
	"io"
	"sync"

	"github.com/ginws/ginws/internal/frame"
)

// ErrNotUTF8 is returned by Writes in text mode whose bytes are not UTF-8;
// nothing invalid is sent.
var ErrNotUTF8 = errors.New("ginws: text is not valid UTF-8")

// Source is the read side of a message socket.
type Source interface {
	// NextMessage starts the next message; its payload is then read with
	// ReadMessage until io.EOF.
	NextMessage() error
	// ReadMessage reads payload of the current message; io.EOF at its end.
	ReadMessage(p []byte) (int, error)
	// Buffered reports whether bytes of the next message (or its end)
	// are in hand: NextMessage and the first ReadMessage of it return
	// without waiting for the peer.
	Buffered() bool
}

// Sink is the write side of a message socket.
type Sink interface {
	// WriteMessage sends p as one message of the stream's type.
	WriteMessage(p []byte) error
}

// Stream is the byte stream over one socket. Reads and writes may run
// concurrently; Read is for one goroutine at a time, Write is as safe as
// the Sink (in text byte mode the UTF-8 held back between Writes is the
// stream's, so several goroutines writing runes cut across their Writes
// interleave them as they go).
type Stream struct {
	src        Source
	dst        Sink
	objectMode bool
	text       bool
	open       bool       // a message is being read
	tmu        sync.Mutex // text byte mode: tail and the messages it ends
	tail       [3]byte    // incomplete UTF-8 held back in text byte mode
	ntail      int
}

// New returns a stream over src and dst. In text mode Writes become text
// messages: in byte mode an incomplete UTF-8 sequence at the end of a
// Write waits for the bytes that finish it, in object mode every Write must
// be valid UTF-8 on its own (the Sink checks).
func New(src Source, dst Sink, objectMode, text bool) *Stream {
	return &Stream{src: src, dst: dst, objectMode: objectMode, text: text}
}

// ObjectMode reports the mode chosen at New.
func (s *Stream) ObjectMode() bool { return s.objectMode }

// TakeOpen reports whether a Read has left a message partly read, and
// forgets it: the caller takes the rest of that message itself.
func (s *Stream) TakeOpen() bool {
	open := s.open
	s.open = false
	return open
}

// Read implements io.Reader.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	total := 0
	for {
		if !s.open {
			if total > 0 && (s.objectMode || !s.src.Buffered()) {
				return total, nil
			}
			if err := s.src.NextMessage(); err != nil {
				if total > 0 {
					return total, nil
				}
				return 0, err
			}
			s.open = true
		}
		n, err := s.src.ReadMessage(p[total:])
		total += n
		if err == io.EOF {
			s.open = false
			if s.objectMode || total == len(p) {
				if total == 0 && s.objectMode {
					continue // an empty message carries no bytes
				}
				return total, nil
			}
			continue
		}
		if err != nil {
			return total, err
		}
		if total > 0 && (!s.objectMode || total == len(p)) {
			// In object mode a Read goes on to the end of the message
			// (or of p): the Reads of a message that fits p are one.
			return total, nil
		}
	}
}

// Write implements io.Writer: p goes out now, as one message.
func (s *Stream) Write(p []byte) (int, error) {
	if !s.text || s.objectMode {
		if err := s.dst.WriteMessage(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return s.writeText(p)
}

// DropHeld forgets the incomplete UTF-8 sequence a text byte-mode Write
// left waiting for its end, and reports how many bytes it held: the
// stream is ending and they can no longer be sent.
func (s *Stream) DropHeld() int {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	n := s.ntail
	s.ntail = 0
	return n
}

func (s *Stream) writeText(p []byte) (int, error) {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	n, sent := len(p), 0
	if s.ntail > 0 {
		// Finish the held-back sequence with the first bytes of p.
		need := seqLen(s.tail[0]) - s.ntail
		if need > len(p) {
			// Still unfinished: p must go on with it, or the Write that
			// brought the bytes that cannot would pass for a valid one.
			var v frame.UTF8
			if !v.Write(s.tail[:s.ntail]) || !v.Write(p) {
				s.ntail = 0
				return 0, ErrNotUTF8
			}
			s.ntail += copy(s.tail[s.ntail:], p)
			return n, nil
		}
		var head [4]byte
		copy(head[:], s.tail[:s.ntail])
		copy(head[s.ntail:], p[:need])
		s.ntail = 0
		if !frame.ValidUTF8(head[:seqLen(head[0])]) {
			return 0, ErrNotUTF8
		}
		if err := s.dst.WriteMessage(head[:seqLen(head[0])]); err != nil {
			return 0, err
		}
		p, sent = p[need:], need
	}
	// Only the start of a character is held back: bytes that no later
	// Write can make valid (ED A0, a surrogate's) fail now.
	var v frame.UTF8
	if !v.Write(p) {
		return sent, ErrNotUTF8
	}
	k := frame.IncompleteTail(p)
	if len(p)-k > 0 {
		if err := s.dst.WriteMessage(p[:len(p)-k]); err != nil {
			return sent, err
		}
	}
	s.ntail = copy(s.tail[:], p[len(p)-k:])
	return n, nil
}

func seqLen(c byte) int {
	switch {
	case c >= 0xF0:
		return 4
	case c >= 0xE0:
		return 3
	case c >= 0xC0:
		return 2
	}
	return 1
}
