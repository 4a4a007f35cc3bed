package frame

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// errStop is what the fuzzed OnControl returns for a control payload of
// "stop".
var errStop = errors.New("fuzz: OnControl stop")

// refOutcome is what reading a stream of frames must give: the messages
// read whole, the control frames dispatched, and the error that ends it.
type refOutcome struct {
	msgs []msg
	ctls []ctl
	err  error
	// overflow marks an ErrMessageTooBig whose fragment sum does not fit
	// in int64 (see TestReaderLimitFragmentOverflow).
	overflow bool
	// eofBug marks a message that Read ended with io.EOF while it was still
	// open (see TestReaderCleanEOFBetweenFragments); it is reported as the
	// io.ErrUnexpectedEOF it should have been, and flagged.
	eofBug bool
}

// refRead is a plain model of RFC 6455 reading, written from the RFC and
// the Reader's documented rule order, independent of the Reader's code:
// header by header over the whole input, unicode/utf8 for the text rules.
func refRead(data []byte, client bool, rsv byte, limit int64) refOutcome {
	var out refOutcome
	var (
		open       bool
		op         ws.OpCode
		compressed bool
		size       uint64 // bytes of the open message, fragments summed
		cur        []byte
	)
	fail := func(err error) refOutcome { out.err = err; return out }
	for pos := 0; ; {
		if pos == len(data) {
			if open {
				return fail(io.ErrUnexpectedEOF) // the message was cut short
			}
			return fail(io.EOF)
		}
		if len(data)-pos < 2 {
			return fail(io.ErrUnexpectedEOF)
		}
		b0, b1 := data[pos], data[pos+1]
		hsize, lenBits := 2, b1&0x7F
		switch lenBits {
		case 126:
			hsize += 2
		case 127:
			hsize += 8
		}
		masked := b1&0x80 != 0
		if masked {
			hsize += 4
		}
		if len(data)-pos < hsize {
			return fail(io.ErrUnexpectedEOF)
		}
		length := uint64(lenBits)
		switch lenBits {
		case 126:
			length = uint64(binary.BigEndian.Uint16(data[pos+2:]))
		case 127:
			length = binary.BigEndian.Uint64(data[pos+2:])
			if length > math.MaxInt64 {
				return fail(ErrLengthOverflow)
			}
		}
		var mask [4]byte
		if masked {
			copy(mask[:], data[pos+hsize-4:])
		}
		fin, bits, opc := b0&0x80 != 0, (b0>>4)&7, ws.OpCode(b0&0xF)
		pos += hsize

		switch {
		case masked && client:
			return fail(ErrMasked)
		case !masked && !client:
			return fail(ErrUnmasked)
		case bits&^rsv != 0:
			return fail(ErrReservedBits)
		}
		control := false
		switch opc {
		case ws.OpContinuation:
			if !open {
				return fail(ErrUnexpectedContinuation)
			}
			if bits&RSV1 != 0 {
				return fail(ErrCompressedControl)
			}
		case ws.OpText, ws.OpBinary:
			if open {
				return fail(ErrExpectedContinuation)
			}
		case ws.OpClose, ws.OpPing, ws.OpPong:
			switch {
			case length > MaxControlPayload:
				return fail(ErrControlTooLong)
			case !fin:
				return fail(ErrControlFragmented)
			case bits&RSV1 != 0:
				return fail(ErrCompressedControl)
			}
			control = true
		default:
			return fail(ErrReservedOpcode)
		}
		if !control {
			total := length
			if opc == ws.OpContinuation {
				total += size // both below 2^63: no uint64 overflow
			}
			if limit > 0 && total > uint64(limit) {
				out.overflow = total > math.MaxInt64
				return fail(ErrMessageTooBig)
			}
		}

		avail := min(length, uint64(len(data)-pos))
		payload := append([]byte(nil), data[pos:pos+int(avail)]...)
		if masked {
			for i := range payload {
				payload[i] ^= mask[i%4]
			}
		}
		if control {
			if avail < length {
				return fail(io.ErrUnexpectedEOF)
			}
			pos += int(length)
			if opc == ws.OpClose && len(payload) > 0 {
				if len(payload) == 1 {
					return fail(ErrCloseOneByte)
				}
				code := int(binary.BigEndian.Uint16(payload))
				if !((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)) {
					return fail(ErrInvalidCloseCode)
				}
				if !utf8.Valid(payload[2:]) {
					return fail(ErrCloseReasonUTF8)
				}
			}
			out.ctls = append(out.ctls, ctl{opc, string(payload)})
			if string(payload) == "stop" {
				return fail(errStop)
			}
			continue
		}

		if !open {
			open, op, compressed, size, cur = true, opc, bits&RSV1 != 0, 0, nil
		}
		size += length
		cur = append(cur, payload...)
		checkText := op == ws.OpText && !compressed
		if checkText && refFirstBad(cur) >= 0 {
			return fail(ErrInvalidUTF8) // fail fast, before the frame ends
		}
		if avail < length {
			return fail(io.ErrUnexpectedEOF)
		}
		pos += int(length)
		if fin {
			if checkText && !utf8.Valid(cur) {
				return fail(ErrInvalidUTF8)
			}
			out.msgs = append(out.msgs, msg{op, string(cur)})
			open = false
		}
	}
}

// fuzzOptions decodes the flags argument of FuzzReader.
type fuzzOptions struct {
	client   bool
	rsv      byte
	oneByte  bool // the source hands out one byte per Read
	bufSize  int  // of the bufio.Reader
	readSize int  // of the caller's Read buffer
}

func decodeFlags(flags uint8) fuzzOptions {
	o := fuzzOptions{client: flags&1 != 0, oneByte: flags&4 != 0, bufSize: 4096, readSize: 1 + int(flags>>4)*9}
	if flags&2 != 0 {
		o.rsv = RSV1
	}
	if flags&8 != 0 {
		// The smallest Source (see its doc): a control frame is peeked
		// whole, header and payload.
		o.bufSize = MaxHeaderSize + MaxControlPayload
	}
	return o
}

// readStream drives a Reader the way ginws does and checks the invariants
// that hold whatever the input: no (0, nil) Reads, no message over the
// limit, text that is returned whole is UTF-8, violations are sticky.
func readStream(t *testing.T, data []byte, limit int64, o fuzzOptions) refOutcome {
	var src io.Reader = bytes.NewReader(data)
	if o.oneByte {
		src = iotest.OneByteReader(src)
	}
	var out refOutcome
	r := NewReader(bufio.NewReaderSize(src, o.bufSize))
	r.Client, r.RSV, r.Limit = o.client, o.rsv, limit
	r.OnControl = ControlFunc(func(op ws.OpCode, p []byte) error {
		if len(p) > MaxControlPayload || !op.IsControl() {
			t.Fatalf("OnControl(%v, %d bytes)", op, len(p))
		}
		if op == ws.OpClose {
			if _, _, err := ParseClose(p); err != nil {
				t.Fatalf("OnControl got a close payload %x that fails ParseClose: %v", p, err)
			}
		}
		out.ctls = append(out.ctls, ctl{op, string(p)})
		if string(p) == "stop" {
			return errStop
		}
		return nil
	})
	buf := make([]byte, o.readSize)
	for {
		op, err := r.NextMessage()
		if err != nil {
			out.err = err
			break
		}
		if op != ws.OpText && op != ws.OpBinary {
			t.Fatalf("NextMessage returned opcode %v", op)
		}
		var m []byte
		for {
			n, err := r.Read(buf)
			if n < 0 || n > len(buf) || (n == 0 && err == nil) {
				t.Fatalf("Read(%d bytes) = %d, %v", len(buf), n, err)
			}
			m = append(m, buf[:n]...)
			if limit > 0 && int64(len(m)) > limit {
				if refRead(data, o.client, o.rsv, limit).overflow {
					t.Fatalf("fragment length sum overflows int64 and passes Limit (TestReaderLimitFragmentOverflow)")
				}
				t.Fatalf("message of at least %d bytes returned with Limit %d", len(m), limit)
			}
			if err == io.EOF && r.Open() {
				out.eofBug = true
				err = io.ErrUnexpectedEOF
			}
			if err == io.EOF {
				if op == ws.OpText && !r.Compressed() && !utf8.Valid(m) {
					t.Fatalf("text message returned whole is not UTF-8: %x", m)
				}
				out.msgs = append(out.msgs, msg{op, string(m)})
				break
			}
			if err != nil {
				out.err = err
				break
			}
		}
		if out.err != nil {
			break
		}
	}
	var pe *Error
	if errors.As(out.err, &pe) || out.err == errStop {
		if r.Err() != out.err {
			t.Fatalf("Err() = %v after %v", r.Err(), out.err)
		}
		if _, err := r.NextMessage(); err != out.err {
			t.Fatalf("NextMessage after %v: %v", out.err, err)
		}
	}
	return out
}

func FuzzReader(f *testing.F) {
	for _, s := range readerSeeds() {
		f.Add(s.data, s.limit, s.flags)
	}
	f.Fuzz(func(t *testing.T, data []byte, limit uint16, flags uint8) {
		o := decodeFlags(flags)
		got := readStream(t, data, int64(limit), o)
		want := refRead(data, o.client, o.rsv, int64(limit))
		if want.overflow && got.err != ErrMessageTooBig {
			t.Fatalf("fragment length sum overflows int64 and passes Limit (TestReaderLimitFragmentOverflow)")
		}
		if got.err != want.err || !equalMsgs(got.msgs, want.msgs) || !equalCtls(got.ctls, want.ctls) {
			t.Fatalf("input %x limit %d options %+v\nReader: %d msgs %q, controls %q, err %v\nmodel:  %d msgs %q, controls %q, err %v",
				data, limit, o, len(got.msgs), got.msgs, got.ctls, got.err, len(want.msgs), want.msgs, want.ctls, want.err)
		}
		if got.eofBug {
			t.Fatalf("io.EOF from Read while the message is still open: a message cut by the end " +
				"of the stream after a non-final frame reads as complete (TestReaderCleanEOFBetweenFragments)")
		}
	})
}

func equalMsgs(a, b []msg) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalCtls(a, b []ctl) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzUTF8(f *testing.F) {
	for _, s := range utf8Seeds() {
		f.Add(s, uint16(len(s)/2), uint16(len(s)/3))
	}
	f.Fuzz(func(t *testing.T, p []byte, a, b uint16) {
		want := utf8.Valid(p)
		bad := refFirstBad(p)
		if ValidUTF8(p) != want {
			t.Fatalf("ValidUTF8(%x) = %v", p, !want)
		}
		// verdict checks one way of cutting p.
		verdict := func(cuts ...int) {
			var v UTF8
			prev := 0
			for i, c := range append(cuts, len(p)) {
				ok := v.Write(p[prev:c])
				if wantOK := bad < 0 || bad >= c; ok != wantOK {
					t.Fatalf("%x cut at %v: Write #%d (%d:%d) = %v, first bad byte %d", p, cuts, i, prev, c, ok, bad)
				}
				if !ok {
					return
				}
				prev = c
			}
			if v.Complete() != want {
				t.Fatalf("%x cut at %v: Complete = %v, want %v", p, cuts, v.Complete(), want)
			}
		}
		n := len(p)
		verdict()
		step := 1
		if n > 256 {
			step = n / 64
		}
		for i := 0; i <= n; i += step {
			verdict(i)
		}
		if n > 0 {
			i, j := int(a)%(n+1), int(b)%(n+1)
			verdict(min(i, j), max(i, j))
		}
		if n <= 256 {
			cuts := make([]int, 0, n)
			for i := 1; i < n; i++ {
				cuts = append(cuts, i)
			}
			verdict(cuts...) // byte by byte: fail fast
		}
		// IncompleteTail of valid text cut anywhere leaves valid text.
		if want && n > 0 {
			cut := int(a) % (n + 1)
			if k := IncompleteTail(p[:cut]); !utf8.Valid(p[:cut-k]) || k > 3 {
				t.Fatalf("IncompleteTail(%x) = %d", p[:cut], k)
			}
		}
	})
}

func FuzzParseClose(f *testing.F) {
	for _, s := range closeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		code, reason, err := ParseClose(p)
		switch {
		case len(p) == 0:
			if err != nil || code != CloseNoStatus || reason != nil {
				t.Fatalf("ParseClose(empty) = %d, %q, %v", code, reason, err)
			}
		case len(p) == 1:
			if err != ErrCloseOneByte {
				t.Fatalf("ParseClose(%x) err = %v", p, err)
			}
		case !ValidCloseCode(binary.BigEndian.Uint16(p)):
			if err != ErrInvalidCloseCode {
				t.Fatalf("ParseClose(%x) err = %v", p, err)
			}
		case !utf8.Valid(p[2:]):
			if err != ErrCloseReasonUTF8 {
				t.Fatalf("ParseClose(%x) err = %v", p, err)
			}
		default:
			if err != nil || code != binary.BigEndian.Uint16(p) || !bytes.Equal(reason, p[2:]) {
				t.Fatalf("ParseClose(%x) = %d, %q, %v", p, code, reason, err)
			}
			// What was parsed is written back the same (up to 125 bytes).
			if len(p) <= MaxControlPayload {
				if back := AppendClose(nil, code, string(reason)); !bytes.Equal(back, p) {
					t.Fatalf("AppendClose(ParseClose(%x)) = %x", p, back)
				}
			}
		}
		if err != nil && (code != 0 || reason != nil) {
			t.Fatalf("ParseClose(%x) = %d, %q with error %v", p, code, reason, err)
		}

		// Any valid reason, however long, makes a payload ParseClose takes.
		if utf8.Valid(p) {
			out := AppendClose(nil, CloseGoingAway, string(p))
			c, r, err := ParseClose(out)
			if err != nil || c != CloseGoingAway || len(out) > MaxControlPayload || !bytes.HasPrefix(p, r) {
				t.Fatalf("AppendClose(%q) = %x: ParseClose %d, %q, %v", p, out, c, r, err)
			}
			if len(p) > MaxControlPayload-2 && len(r) < MaxControlPayload-2-3 {
				t.Fatalf("AppendClose(%q) cut the reason to %d bytes", p, len(r))
			}
		}
	})
}

// TestFuzzModelOnRuleTable runs the fuzz harness, model included, on the
// seed streams in every option combination, so a broken model or harness
// shows up in plain go test.
func TestFuzzModelOnRuleTable(t *testing.T) {
	for _, s := range readerSeeds() {
		for flags := range 256 {
			if flags&0xF0 > 0x30 {
				continue // read sizes 1, 10, 19, 28 are enough here
			}
			t.Run(fmt.Sprintf("%s/%02x", s.name, flags), func(t *testing.T) {
				o := decodeFlags(uint8(flags))
				got := readStream(t, s.data, int64(s.limit), o)
				want := refRead(s.data, o.client, o.rsv, int64(s.limit))
				if got.err != want.err || !equalMsgs(got.msgs, want.msgs) || !equalCtls(got.ctls, want.ctls) {
					t.Fatalf("Reader: %q %q %v\nmodel:  %q %q %v", got.msgs, got.ctls, got.err, want.msgs, want.ctls, want.err)
				}
			})
		}
	}
}

type readerSeed struct {
	name  string
	data  []byte
	limit uint16
	flags uint8
}

// readerSeeds are valid and broken client streams covering every rule.
func readerSeeds() []readerSeed {
	hello := cframe(true, 0, ws.OpText, "Hello")
	return []readerSeed{
		{"empty", nil, 0, 0},
		{"text", hello, 0, 0},
		{"text-small-reads", hello, 0, 0x0C},
		{"binary", cframe(true, 0, ws.OpBinary, "\x00\x01\xfe\xff"), 0, 0x10},
		{"empty-messages", cat(cframe(true, 0, ws.OpText, ""), cframe(true, 0, ws.OpBinary, "")), 0, 0},
		{"fragmented-with-controls", cat(
			cframe(false, 0, ws.OpText, "Hel"), cframe(true, 0, ws.OpPing, "p"), cframe(false, 0, ws.OpContinuation, "lo"),
			cframe(true, 0, ws.OpPong, ""), cframe(true, 0, ws.OpContinuation, " \u00e9\U0001F600"),
		), 64, 0x24},
		{"split-code-point", cat(cframe(false, 0, ws.OpText, "\xf0\x9f"), cframe(true, 0, ws.OpContinuation, "\x98\x80")), 0, 0},
		{"close", cframe(true, 0, ws.OpClose, "\x03\xe8bye"), 0, 0},
		{"close-then-more", cat(cframe(true, 0, ws.OpClose, ""), hello), 0, 0},
		{"stop", cat(cframe(true, 0, ws.OpPing, "stop"), hello), 0, 0},
		{"server-frames", cat(sframe(true, 0, ws.OpText, "hi"), sframe(true, 0, ws.OpPing, "")), 0, 0x01},
		{"masked-to-client", hello, 0, 0x01},
		{"unmasked", sframe(true, 0, ws.OpText, "hi"), 0, 0},
		{"rsv1-negotiated", cframe(true, RSV1, ws.OpText, "\xff\x00"), 0, 0x02},
		{"rsv1-not-negotiated", cframe(true, RSV1, ws.OpText, "x"), 0, 0},
		{"rsv1-continuation", cat(cframe(false, RSV1, ws.OpText, "a"), cframe(true, RSV1, ws.OpContinuation, "b")), 0, 0x02},
		{"reserved-opcode", cframe(true, 0, 0xB, ""), 0, 0},
		{"ping-126", cframe(true, 0, ws.OpPing, strings.Repeat("p", 126)), 0, 0},
		{"fragmented-ping", cframe(false, 0, ws.OpPing, ""), 0, 0},
		{"continuation-first", cframe(true, 0, ws.OpContinuation, "x"), 0, 0},
		{"data-while-fragmented", cat(cframe(false, 0, ws.OpText, "a"), cframe(true, 0, ws.OpBinary, "b")), 0, 0},
		{"length-msb", []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 0, 0},
		{"length-16", cframe(true, 0, ws.OpBinary, strings.Repeat("x", 300)), 1000, 0x30},
		{"over-limit", cframe(true, 0, ws.OpBinary, "abcdef"), 5, 0},
		{"fragments-over-limit", cat(cframe(false, 0, ws.OpBinary, "abc"), cframe(true, 0, ws.OpContinuation, "def")), 5, 0},
		{"huge-header", cheader(true, ws.OpBinary, 1<<40), 100, 0},
		{"huge-continuation", cat(cframe(false, 0, ws.OpBinary, "abc"), cheader(true, ws.OpContinuation, 1<<56)), 100, 0},
		{"invalid-utf8", cframe(true, 0, ws.OpText, "ok\xed\xa0\x80"), 0, 0},
		{"invalid-utf8-first-fragment", cframe(false, 0, ws.OpText, "\xc0\xaf"), 0, 0},
		{"truncated-utf8", cframe(true, 0, ws.OpText, "\xe2\x82"), 0, 0},
		{"bad-close-one-byte", cframe(true, 0, ws.OpClose, "\x03"), 0, 0},
		{"bad-close-code", cframe(true, 0, ws.OpClose, "\x03\xed"), 0, 0},
		{"bad-close-reason", cframe(true, 0, ws.OpClose, "\x03\xe8\xff"), 0, 0},
		{"cut-header", hello[:3], 0, 0},
		{"cut-payload", hello[:8], 0, 0x04},
	}
}

func utf8Seeds() [][]byte {
	return [][]byte{
		nil,
		[]byte("plain ASCII, longer than eight bytes"),
		[]byte("\u00e9\u20ac\U0001F600\U0010FFFF"),
		[]byte("\xed\xa0\x80"),
		[]byte("\xf4\x90\x80\x80"),
		[]byte("\xc0\xaf"),
		[]byte("\xe0\x9f\xbf"),
		[]byte("\xf0\x8f\xbf\xbf"),
		[]byte("abc\xe2\x82"),
		[]byte("01234567\x80"),
	}
}

func closeSeeds() [][]byte {
	return [][]byte{
		nil,
		{0x03},
		{0x03, 0xE8},
		[]byte("\x03\xe8normal"),
		[]byte("\x03\xed"),
		[]byte("\x0f\xa0\xff"),
		append([]byte{0x03, 0xE9}, strings.Repeat("\u20ac", 50)...),
	}
}

// TestWriteFuzzSeeds writes the seed corpus files under testdata/fuzz.
// It runs only with GINWS_WRITE_FUZZ_SEEDS=1; the files are checked in and
// run as seeds by plain go test.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("GINWS_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set GINWS_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	write := func(target, name string, vals ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + strings.Join(vals, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lit := func(p []byte) string { return "[]byte(" + strconv.Quote(string(p)) + ")" }
	for _, s := range readerSeeds() {
		// As in f.Add, and again with the other feed and buffer sizes.
		flags := []uint8{s.flags, s.flags ^ 0x0C ^ 0x50}
		for i, f := range flags {
			write("FuzzReader", fmt.Sprintf("%s-%d", s.name, i), lit(s.data), fmt.Sprintf("uint16(%d)", s.limit), fmt.Sprintf("byte(%q)", f))
		}
	}
	for i, s := range utf8Seeds() {
		write("FuzzUTF8", strconv.Itoa(i), lit(s), fmt.Sprintf("uint16(%d)", len(s)/2), fmt.Sprintf("uint16(%d)", len(s)/3))
	}
	for i, s := range closeSeeds() {
		write("FuzzParseClose", strconv.Itoa(i), lit(s))
	}
}
