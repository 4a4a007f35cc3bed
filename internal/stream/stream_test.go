package stream

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeMsg is one incoming message of a fakeSource.
type fakeMsg struct {
	data string
	// buffered: Buffered reports true while this message is the next one.
	buffered bool
	// err ends the message instead of io.EOF.
	err error
}

// fakeSource plays messages like ginws's frame reader does.
type fakeSource struct {
	t    *testing.T
	msgs []fakeMsg
	// chunk caps the bytes of one ReadMessage call (0: no cap).
	chunk int
	// separateEOF returns io.EOF in a call of its own after the last
	// bytes, instead of with them.
	separateEOF bool
	// endErr is what NextMessage returns after the last message
	// (io.EOF when nil).
	endErr error

	next       int // index of the next message
	open       bool
	off        int
	nextCalls  int
	readCalls  int
	stickyErr  error
	lastOpened int
}

func (s *fakeSource) NextMessage() error {
	s.nextCalls++
	if s.stickyErr != nil {
		return s.stickyErr
	}
	if s.open {
		s.t.Errorf("NextMessage with message %d still open", s.lastOpened)
	}
	if s.next == len(s.msgs) {
		if s.endErr != nil {
			return s.endErr
		}
		return io.EOF
	}
	s.open, s.off, s.lastOpened = true, 0, s.next
	s.next++
	return nil
}

func (s *fakeSource) ReadMessage(p []byte) (int, error) {
	s.readCalls++
	if s.stickyErr != nil {
		return 0, s.stickyErr
	}
	if !s.open {
		s.t.Errorf("ReadMessage with no message open")
		return 0, io.EOF
	}
	m := s.msgs[s.lastOpened]
	n := len(m.data) - s.off
	if s.chunk > 0 {
		n = min(n, s.chunk)
	}
	n = copy(p, m.data[s.off:s.off+n])
	s.off += n
	if s.off < len(m.data) || (s.separateEOF && n > 0) {
		return n, nil
	}
	s.open = false
	if m.err != nil {
		s.stickyErr = m.err
		return n, m.err
	}
	return n, io.EOF
}

func (s *fakeSource) Buffered() bool {
	return s.stickyErr == nil && s.next < len(s.msgs) && s.msgs[s.next].buffered
}

// fakeSink records the messages written, copying them.
type fakeSink struct {
	mu   sync.Mutex
	msgs []string
	// failAt makes the failAt-th WriteMessage (1-based) fail.
	failAt int
	calls  int
}

var errSink = errors.New("sink failed")

func (s *fakeSink) WriteMessage(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls == s.failAt {
		return errSink
	}
	s.msgs = append(s.msgs, string(p))
	return nil
}

func (s *fakeSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// readAll calls Read with bufSize buffers until an error and returns the
// result of every call.
func readAll(t *testing.T, s *Stream, bufSize int) (reads []string, err error) {
	t.Helper()
	buf := make([]byte, bufSize)
	for range 1000 {
		n, err := s.Read(buf)
		require.False(t, n == 0 && err == nil, "Read returned 0, nil")
		require.LessOrEqual(t, n, len(buf))
		if n > 0 {
			reads = append(reads, string(buf[:n]))
		}
		if err != nil {
			return reads, err
		}
	}
	t.Fatal("Read never ended")
	return nil, nil
}

// letterMsgs makes messages of distinct letters, so every byte tells which
// message it came from: message i is letter 'a'+i repeated sizes[i] times.
func letterMsgs(buffered bool, sizes ...int) []fakeMsg {
	var out []fakeMsg
	for i, n := range sizes {
		out = append(out, fakeMsg{data: strings.Repeat(string(rune('a'+i)), n), buffered: buffered})
	}
	return out
}

func TestObjectModeNeverMixesMessages(t *testing.T) {
	sizes := []int{3, 1, 0, 10, 7, 0, 0, 2, 64}
	for _, buffered := range []bool{false, true} {
		for _, chunk := range []int{0, 1, 3} {
			for _, separateEOF := range []bool{false, true} {
				for _, bufSize := range []int{1, 2, 3, 7, 10, 100} {
					name := fmt.Sprintf("buffered=%v/chunk=%d/separateEOF=%v/buf=%d", buffered, chunk, separateEOF, bufSize)
					t.Run(name, func(t *testing.T) {
						src := &fakeSource{t: t, msgs: letterMsgs(buffered, sizes...), chunk: chunk, separateEOF: separateEOF}
						s := New(src, &fakeSink{}, true, false)
						require.True(t, s.ObjectMode())
						reads, err := readAll(t, s, bufSize)
						require.Equal(t, io.EOF, err)
						// Every Read is from one message, and the Reads of a
						// message put it back together.
						got := map[byte]string{}
						for _, r := range reads {
							require.Equal(t, strings.Repeat(r[:1], len(r)), r, "one Read mixes messages")
							got[r[0]] += r
						}
						for i, n := range sizes {
							if n > 0 {
								assert.Len(t, got[byte('a'+i)], n, "message %d", i)
							}
						}
						if bufSize >= 64 {
							// A roomy buffer gets each non-empty message whole, however
							// the source hands it out.
							var want []string
							for _, m := range letterMsgs(false, sizes...) {
								if m.data != "" {
									want = append(want, m.data)
								}
							}
							assert.Equal(t, want, reads)
						}
					})
				}
			}
		}
	}
}

func TestByteModeJoinsBufferedMessages(t *testing.T) {
	src := &fakeSource{t: t, msgs: []fakeMsg{
		{data: "abc", buffered: true}, {data: "def", buffered: true}, {data: "", buffered: true}, {data: "ghi", buffered: true},
	}}
	s := New(src, &fakeSink{}, false, false)
	assert.False(t, s.ObjectMode())
	buf := make([]byte, 100)
	n, err := s.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "abcdefghi", string(buf[:n]), "buffered messages run together")
	n, err = s.Read(buf)
	assert.Zero(t, n)
	assert.Equal(t, io.EOF, err)
}

func TestByteModeStopsAtUnbufferedMessage(t *testing.T) {
	src := &fakeSource{t: t, msgs: []fakeMsg{
		{data: "abc", buffered: true}, {data: "def", buffered: true}, {data: "ghi", buffered: false}, {data: "jk", buffered: true},
	}}
	s := New(src, &fakeSink{}, false, false)
	buf := make([]byte, 100)
	n, err := s.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "abcdef", string(buf[:n]))
	assert.Equal(t, 2, src.nextCalls, "Read must not wait for a message that is not there yet")
	n, err = s.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "ghijk", string(buf[:n]), "a Read that has nothing yet waits for the next message")
	_, err = s.Read(buf)
	assert.Equal(t, io.EOF, err)
}

func TestByteModeReadSizes(t *testing.T) {
	sizes := []int{5, 0, 1, 12, 0, 3}
	var all string
	for _, m := range letterMsgs(false, sizes...) {
		all += m.data
	}
	for _, buffered := range []bool{false, true} {
		for _, chunk := range []int{0, 2} {
			for _, separateEOF := range []bool{false, true} {
				for _, bufSize := range []int{1, 2, 4, 5, 6, 30} {
					name := fmt.Sprintf("buffered=%v/chunk=%d/separateEOF=%v/buf=%d", buffered, chunk, separateEOF, bufSize)
					t.Run(name, func(t *testing.T) {
						src := &fakeSource{t: t, msgs: letterMsgs(buffered, sizes...), chunk: chunk, separateEOF: separateEOF}
						s := New(src, &fakeSink{}, false, false)
						reads, err := readAll(t, s, bufSize)
						require.Equal(t, io.EOF, err)
						assert.Equal(t, all, strings.Join(reads, ""))
						if !buffered {
							// Nothing buffered: no Read crosses a message boundary.
							for _, r := range reads {
								assert.Equal(t, strings.Repeat(r[:1], len(r)), r)
							}
						}
					})
				}
			}
		}
	}
}

func TestByteModeFillsBufferExactly(t *testing.T) {
	// When a message ends exactly at the end of p, Read returns without
	// looking at the next message.
	src := &fakeSource{t: t, msgs: []fakeMsg{{data: "abcd", buffered: true}, {data: "ef", buffered: true}}}
	s := New(src, &fakeSink{}, false, false)
	buf := make([]byte, 4)
	n, err := s.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "abcd", string(buf[:n]))
	assert.Equal(t, 1, src.nextCalls)
	n, err = s.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "ef", string(buf[:n]))
}

func TestEmptyMessages(t *testing.T) {
	for _, objectMode := range []bool{false, true} {
		t.Run(fmt.Sprintf("object=%v", objectMode), func(t *testing.T) {
			// Only empty messages: Read never returns 0, nil, just the end.
			src := &fakeSource{t: t, msgs: []fakeMsg{{data: ""}, {data: "", buffered: true}, {data: ""}}}
			s := New(src, &fakeSink{}, objectMode, false)
			n, err := s.Read(make([]byte, 8))
			assert.Zero(t, n)
			assert.Equal(t, io.EOF, err)
			assert.Equal(t, 4, src.nextCalls)

			// Empty messages between data are skipped.
			src = &fakeSource{t: t, msgs: []fakeMsg{{data: "x"}, {data: ""}, {data: ""}, {data: "y"}}}
			s = New(src, &fakeSink{}, objectMode, false)
			reads, err := readAll(t, s, 8)
			assert.Equal(t, io.EOF, err)
			assert.Equal(t, []string{"x", "y"}, reads)
		})
	}
}

func TestReadEmptyBuffer(t *testing.T) {
	src := &fakeSource{t: t, msgs: []fakeMsg{{data: "x"}}}
	s := New(src, &fakeSink{}, false, false)
	n, err := s.Read(nil)
	assert.Zero(t, n)
	assert.NoError(t, err)
	assert.Zero(t, src.nextCalls+src.readCalls, "an empty Read touches nothing")
}

func TestReadErrors(t *testing.T) {
	errPeer := errors.New("peer went away")
	for _, objectMode := range []bool{false, true} {
		t.Run(fmt.Sprintf("object=%v", objectMode), func(t *testing.T) {
			// NextMessage fails with nothing read: the error is returned.
			src := &fakeSource{t: t, endErr: errPeer}
			s := New(src, &fakeSink{}, objectMode, false)
			n, err := s.Read(make([]byte, 8))
			assert.Zero(t, n)
			assert.Same(t, errPeer, err)

			// An error ending a message comes back with the bytes before it.
			src = &fakeSource{t: t, msgs: []fakeMsg{{data: "ab"}, {data: "cd", err: errPeer}, {data: "never"}}}
			s = New(src, &fakeSink{}, objectMode, false)
			reads, err := readAll(t, s, 8)
			assert.Same(t, errPeer, err)
			assert.Equal(t, []string{"ab", "cd"}, reads)
			// And again on the next Read.
			_, err = s.Read(make([]byte, 8))
			assert.Same(t, errPeer, err)

			// Reported after the bytes when the source hands them out
			// first.
			src = &fakeSource{t: t, msgs: []fakeMsg{{data: "cd", err: errPeer}}, separateEOF: true}
			s = New(src, &fakeSink{}, objectMode, false)
			reads, err = readAll(t, s, 8)
			assert.Same(t, errPeer, err)
			assert.Equal(t, []string{"cd"}, reads)
		})
	}
}

func TestByteModeNextMessageErrorAfterData(t *testing.T) {
	// The next message is said to be buffered but fails to start: the
	// bytes already read are returned now, the error on the next Read.
	errBad := errors.New("protocol violation")
	src := &fakeSource{t: t, msgs: []fakeMsg{{data: "abc"}, {data: "never", buffered: true}}}
	s := New(&failingNext{fakeSource: src, failOn: 2, err: errBad}, &fakeSink{}, false, false)
	buf := make([]byte, 10)
	n, err := s.Read(buf)
	assert.NoError(t, err)
	assert.Equal(t, "abc", string(buf[:n]))
	n, err = s.Read(buf)
	assert.Zero(t, n)
	assert.Same(t, errBad, err)
}

// failingNext makes the failOn-th NextMessage call and those after it
// fail.
type failingNext struct {
	*fakeSource
	failOn int
	err    error
	calls  int
}

func (f *failingNext) NextMessage() error {
	f.calls++
	if f.calls >= f.failOn {
		return f.err
	}
	return f.fakeSource.NextMessage()
}

func TestWriteBinaryAndObject(t *testing.T) {
	for _, tc := range []struct {
		objectMode, text bool
	}{{false, false}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("object=%v/text=%v", tc.objectMode, tc.text), func(t *testing.T) {
			sink := &fakeSink{}
			s := New(&fakeSource{t: t}, sink, tc.objectMode, tc.text)
			writes := []string{"hello", "", "\xe2\x82", "\xac", "\xff", strings.Repeat("z", 5000)}
			for _, w := range writes {
				n, err := s.Write([]byte(w))
				require.NoError(t, err)
				assert.Equal(t, len(w), n)
			}
			// Every Write is one message, as written (in object text mode
			// the Sink is the one that checks UTF-8).
			assert.Equal(t, writes, sink.messages())
		})
	}
}

func TestWriteSinkError(t *testing.T) {
	for _, tc := range []struct {
		objectMode, text bool
	}{{false, false}, {true, false}, {true, true}, {false, true}} {
		sink := &fakeSink{failAt: 1}
		s := New(&fakeSource{t: t}, sink, tc.objectMode, tc.text)
		n, err := s.Write([]byte("abc"))
		assert.Zero(t, n)
		assert.Same(t, errSink, err)
	}
	// In text byte mode, a failure sending the completed held-back rune.
	sink := &fakeSink{failAt: 2}
	s := New(&fakeSource{t: t}, sink, false, true)
	n, err := s.Write([]byte("a\xe2"))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, err = s.Write([]byte("\x82\xacrest"))
	assert.Zero(t, n)
	assert.Same(t, errSink, err)
	assert.Equal(t, []string{"a"}, sink.messages())

	// A failure after the completed rune went out: the bytes of p it took
	// are counted.
	sink = &fakeSink{failAt: 3}
	s = New(&fakeSource{t: t}, sink, false, true)
	_, err = s.Write([]byte("a\xe2"))
	require.NoError(t, err)
	n, err = s.Write([]byte("\x82\xacrest"))
	assert.Equal(t, 2, n)
	assert.Same(t, errSink, err)
	assert.Equal(t, []string{"a", "\u20ac"}, sink.messages())
}

// TestTextByteModeConcurrentWrites: the held-back UTF-8 is the stream's,
// and Writes from several goroutines (each whole runes) are safe.
func TestTextByteModeConcurrentWrites(t *testing.T) {
	const writers, each = 4, 100
	sink := &fakeSink{}
	s := New(&fakeSource{t: t}, sink, false, true)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				if _, err := s.Write([]byte("h\u00e9llo w\u00f6rld \u2713")); err != nil {
					t.Errorf("Write: %v", err)
				}
			}
		})
	}
	wg.Wait()
	msgs := sink.messages()
	assert.Len(t, msgs, writers*each)
	for _, m := range msgs {
		assert.Equal(t, "h\u00e9llo w\u00f6rld \u2713", m)
	}
}

func TestTextByteModeHoldsBackIncompleteUTF8(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   []string // messages sent
	}{
		{"ascii", []string{"ab", "cd"}, []string{"ab", "cd"}},
		{"empty writes send nothing", []string{"", "a", ""}, []string{"a"}},
		{"2-byte split", []string{"caf\xc3", "\xa9!"}, []string{"caf", "\u00e9", "!"}},
		{"3-byte split 1+2", []string{"\xe2", "\x82\xac"}, []string{"\u20ac"}},
		{"3-byte split 2+1", []string{"x\xe2\x82", "\xac"}, []string{"x", "\u20ac"}},
		{"4-byte byte by byte", []string{"\xf0", "\x9f", "\x98", "\x80"}, []string{"\U0001F600"}},
		{"4-byte byte by byte with empties", []string{"\xf0", "", "\x9f", "", "\x98", "\x80"}, []string{"\U0001F600"}},
		{"completed and cut again", []string{"\xf0\x9f", "\x98\x80\xe2", "\x82\xac"}, []string{"\U0001F600", "\u20ac"}},
		{"completed with a tail", []string{"\xc3", "\xa9abc\xf0\x9f\x98"}, []string{"\u00e9", "abc"}},
		{"whole runes pass", []string{"\u00e9\u20ac\U0001F600"}, []string{"\u00e9\u20ac\U0001F600"}},
		{"only a tail", []string{"\xe2\x82"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := &fakeSink{}
			s := New(&fakeSource{t: t}, sink, false, true)
			for _, w := range tc.writes {
				n, err := s.Write([]byte(w))
				require.NoError(t, err)
				require.Equal(t, len(w), n, "Write reports all of p, held-back bytes included")
			}
			assert.Equal(t, tc.want, sink.messages())
		})
	}
}

// completePrefix is how much of w ends on a rune boundary of valid text:
// everything but an unfinished last rune.
func completePrefix(w []byte) int {
	i := len(w)
	for k := 1; k <= utf8.UTFMax && k <= len(w); k++ {
		if utf8.RuneStart(w[len(w)-k]) {
			i = len(w) - k
			break
		}
	}
	if i < len(w) && !utf8.FullRune(w[i:]) {
		return i
	}
	return len(w)
}

func TestTextByteModeRandomSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	alphabet := []rune{'a', 'Z', ' ', '\u00e9', '\u03a9', '\u0800', '\u20ac', '\uffff', '\U00010000', '\U0001F600', '\U0010FFFF'}
	for iter := range 2000 {
		var text []byte
		for range rng.IntN(40) {
			text = utf8.AppendRune(text, alphabet[rng.IntN(len(alphabet))])
		}
		sink := &fakeSink{}
		s := New(&fakeSource{t: t}, sink, false, true)
		written := 0
		for written < len(text) || rng.IntN(4) == 0 {
			n := min(len(text)-written, rng.IntN(6))
			w, err := s.Write(text[written : written+n])
			require.NoError(t, err)
			require.Equal(t, n, w)
			written += n
			// All that can be sent has been: only an unfinished rune waits.
			sent := strings.Join(sink.messages(), "")
			want := completePrefix(text[:written])
			if sent != string(text[:want]) {
				t.Fatalf("iteration %d: after writing %x, sent %x, want %x", iter, text[:written], sent, text[:want])
			}
			if written == len(text) && rng.IntN(2) == 0 {
				break
			}
		}
		msgs := sink.messages()
		for _, m := range msgs {
			require.NotEmpty(t, m, "no empty messages")
			require.Truef(t, utf8.ValidString(m), "message %x of text %x is not UTF-8", m, text)
		}
		require.Equal(t, string(text), strings.Join(msgs, ""))
	}
}

// TestTextByteModeInvalidInput: a text stream must not put invalid UTF-8
// in a text message (RFC 6455 section 5.6; the peer fails the connection
// with 1007). Either Write refuses it or it is not sent as text.
func TestTextByteModeInvalidInput(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
	}{
		{"invalid byte", []string{"ok\xff", "more"}},
		{"lead byte then ASCII", []string{"caf\xc3", "e"}},
		{"lone continuation", []string{"\x80abc"}},
		{"surrogate", []string{"\xed\xa0\x80"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := &fakeSink{}
			s := New(&fakeSource{t: t}, sink, false, true)
			var werr error
			for _, w := range tc.writes {
				if _, werr = s.Write([]byte(w)); werr != nil {
					break
				}
			}
			for _, m := range sink.messages() {
				if !utf8.ValidString(m) {
					t.Errorf("Writes %q returned %v and sent text messages %q: %q is not UTF-8",
						tc.writes, werr, sink.messages(), m)
				}
			}
		})
	}
}

func TestConcurrentReadAndWrite(t *testing.T) {
	const n = 200
	msgs := make([]fakeMsg, n)
	for i := range msgs {
		msgs[i] = fakeMsg{data: fmt.Sprintf("in-%03d;", i), buffered: i%3 != 0}
	}
	sink := &fakeSink{}
	s := New(&fakeSource{t: t, msgs: msgs}, sink, false, true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if _, err := s.Write([]byte(fmt.Sprintf("out-\u20ac%03d;", i))); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	var got strings.Builder
	_, err := io.Copy(&got, s)
	require.NoError(t, err)
	wg.Wait()
	var want strings.Builder
	for i := range n {
		want.WriteString(fmt.Sprintf("in-%03d;", i))
	}
	assert.Equal(t, want.String(), got.String())
	assert.Len(t, sink.messages(), n)
}
