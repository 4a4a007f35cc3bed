package conformance

// Rows after the Autobahn testsuite sections 12 (compression, different
// payloads) and 13 (compression, different parameters): permessage-deflate
// (RFC 7692) against a second examples/echo started with -deflate. The
// client here compresses and inflates with compress/flate, following RFC
// 7692 section 7.2, and checks what the server agrees to in the handshake
// and that its frames use RSV1 only as the extension allows.
//
// With GINWS_CONFORMANCE_ADDR (an external server), these rows need
// GINWS_CONFORMANCE_DEFLATE_ADDR, a server of the same contract with
// permessage-deflate on; without it they are skipped.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

var (
	deflServerOnce sync.Once
	deflServerAddr string
	deflServerErr  error
	deflServerProc *echoProc
)

// deflServerUnderTest starts examples/echo with -deflate (once), through a
// two-line script that adds the flag, so startEcho is reused as it is.
func deflServerUnderTest(t *testing.T) string {
	t.Helper()
	serverUnderTest(t)
	deflServerOnce.Do(func() {
		if addr := os.Getenv("GINWS_CONFORMANCE_DEFLATE_ADDR"); addr != "" {
			deflServerAddr = addr
			return
		}
		if echoBinary == "" {
			deflServerErr = errDeflSkip
			return
		}
		script := filepath.Join(serverDir, "echo-deflate")
		body := "#!/bin/sh\nexec " + deflShellQuote(echoBinary) + " -deflate \"$@\"\n"
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			deflServerErr = err
			return
		}
		p, err := startEcho(script, maxPayload)
		if err != nil {
			deflServerErr = fmt.Errorf("starting examples/echo -deflate: %w", err)
			return
		}
		deflServerProc, deflServerAddr = p, p.addr
	})
	if deflServerErr == errDeflSkip {
		t.Skip("testing an external server: set GINWS_CONFORMANCE_DEFLATE_ADDR for the permessage-deflate rows")
	}
	if deflServerErr != nil {
		t.Fatal(deflServerErr)
	}
	return deflServerAddr
}

var errDeflSkip = fmt.Errorf("no deflate server")

func deflShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// ---- the client side of permessage-deflate ----

// deflConn is a wsConn whose handshake offered permessage-deflate.
type deflConn struct {
	*wsConn
	ext string // Sec-WebSocket-Extensions of the response

	clientCtx bool // the client may compress with context takeover
	serverCtx bool // the server may use context takeover
	fw        *flate.Writer
	fbuf      bytes.Buffer
	hist      []byte // the server's window, when serverCtx
}

func deflDialWS(addr, offer string) (*deflConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	sum := sha1.Sum([]byte(key + acceptGUID))
	wantAccept := base64.StdEncoding.EncodeToString(sum[:])
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /echo HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	if offer != "" {
		req += "Sec-WebSocket-Extensions: " + offer + "\r\n"
	}
	if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	tp := textproto.NewReader(br)
	status, err := tp.ReadLine()
	if err == nil && !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		err = fmt.Errorf("status line %q: want 101", status)
	}
	var hdr textproto.MIMEHeader
	if err == nil {
		hdr, err = tp.ReadMIMEHeader()
	}
	if err == nil && hdr.Get("Sec-Websocket-Accept") != wantAccept {
		err = fmt.Errorf("Sec-WebSocket-Accept %q: want %q", hdr.Get("Sec-Websocket-Accept"), wantAccept)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	c := &deflConn{wsConn: &wsConn{nc: nc, br: br}, ext: strings.Join(hdr.Values("Sec-Websocket-Extensions"), ", ")}
	if c.ext != "" {
		if !strings.HasPrefix(c.ext, "permessage-deflate") {
			nc.Close()
			return nil, violation("extensions %q: want permessage-deflate or none", c.ext)
		}
		c.clientCtx = !strings.Contains(c.ext, "client_no_context_takeover")
		c.serverCtx = !strings.Contains(c.ext, "server_no_context_takeover")
	}
	return c, nil
}

// compress is RFC 7692 section 7.2.1.
func (c *deflConn) compress(p []byte) []byte {
	c.fbuf.Reset()
	if c.fw == nil || !c.clientCtx {
		c.fw, _ = flate.NewWriter(&c.fbuf, flate.DefaultCompression)
	}
	_, _ = c.fw.Write(p)
	_ = c.fw.Flush()
	b := c.fbuf.Bytes()
	return append([]byte(nil), b[:len(b)-4]...)
}

// inflate is RFC 7692 section 7.2.2.
func (c *deflConn) inflate(p []byte) ([]byte, error) {
	in := append(append([]byte(nil), p...), 0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff)
	var dict []byte
	if c.serverCtx {
		dict = c.hist
	}
	out, err := io.ReadAll(io.LimitReader(flate.NewReaderDict(bytes.NewReader(in), dict), maxServerMessage+1))
	if err != nil {
		return nil, violation("compressed message does not inflate: %v", err)
	}
	if c.serverCtx {
		c.hist = append(c.hist, out...)
		if len(c.hist) > 32<<10 {
			c.hist = append([]byte(nil), c.hist[len(c.hist)-32<<10:]...)
		}
	}
	return out, nil
}

// readDeflFrame is wsConn.readFrame with RSV1 allowed where the extension
// allows it: the first frame of a data message, once agreed.
func (c *deflConn) readDeflFrame() (serverFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	f := serverFrame{fin: h[0]&0x80 != 0, rsv: (h[0] >> 4) & 7, op: h[0] & 0x0F}
	length := uint64(h[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return f, err
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return f, err
		}
		length = binary.BigEndian.Uint64(ext[:])
	}
	if h[1]&0x80 != 0 {
		return f, violation("masked frame from the server")
	}
	switch {
	case f.rsv == 4 && c.ext == "":
		return f, violation("RSV1 without permessage-deflate")
	case f.rsv == 4 && (f.op != opText && f.op != opBinary):
		return f, violation("RSV1 on a %s frame", opName(f.op))
	case f.rsv&^4 != 0:
		return f, violation("RSV bits %03b", f.rsv)
	}
	if length > maxServerMessage {
		return f, violation("frame of %d bytes", length)
	}
	f.payload = make([]byte, length)
	_, err := io.ReadFull(c.br, f.payload)
	return f, err
}

// readDeflEvent returns the next message (inflated) or close frame, and
// whether the message came compressed. Pings and pongs are skipped.
func (c *deflConn) readDeflEvent() (event, bool, error) {
	var op byte
	var msg []byte
	compressed, open := false, false
	for {
		f, err := c.readDeflFrame()
		if err != nil {
			return event{}, false, err
		}
		switch f.op {
		case opPing, opPong: // pongs answer the pings sent between fragments
			continue
		case opClose:
			e, err := parseClose(f.payload)
			return e, false, err
		case opText, opBinary:
			if open {
				return event{}, false, violation("new message inside a fragmented one")
			}
			op, compressed, open = f.op, f.rsv == 4, true
		case opCont:
			if !open {
				return event{}, false, violation("continuation without a message")
			}
		}
		msg = append(msg, f.payload...)
		if !f.fin {
			continue
		}
		if compressed {
			if msg, err = c.inflate(msg); err != nil {
				return event{}, true, err
			}
		}
		if op == opText && !utf8.Valid(msg) {
			return event{}, compressed, violation("text message with invalid UTF-8")
		}
		return event{kind: evMessage, op: op, payload: msg}, compressed, nil
	}
}

// ---- rows ----

// deflMsg is one message of a row: sent compressed (or not), in frags
// fragments, and echoed.
type deflMsg struct {
	op      byte
	p       []byte
	plain   bool // sent without compression
	frags   int  // 0 or 1: one frame
	pingsIn bool // a ping between the fragments
}

// deflRow is one row: an offer, what the server must answer, the
// messages, and how it ends (0: a clean close after the echoes).
type deflRow struct {
	id, desc string
	offer    string
	wantExt  string // "" declines
	msgs     func() []deflMsg
	raw      func(c *deflConn) [][]byte // instead of msgs: frames as bytes
	close    int                        // the close code the server must send
}

func (r deflRow) name() string {
	d := strings.NewReplacer(" ", "_", "/", "-", ",", "", "(", "", ")", "", "'", "", "\"", "", ";", "", "=", "").Replace(r.desc)
	return r.id + "_" + d
}

const (
	deflPMD  = "permessage-deflate"
	deflSNTC = "server_no_context_takeover"
	deflCNTC = "client_no_context_takeover"
)

// deflSizes are Autobahn's payload sizes for sections 12 and 13.
var deflSizes = []int{16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072}

// deflCount is how many messages a row sends: many small ones, a few
// large ones.
func deflCount(size int) int { return max(2, min(40, (512<<10)/size/4)) }

// deflPayload makes payloads of a kind: compressible text, compressible
// binary, random text (every rune length), random binary.
func deflPayload(kind string, size, i int) []byte {
	r := mrand.New(mrand.NewPCG(uint64(size), uint64(i)))
	switch kind {
	case "text":
		if size > 8 {
			return append([]byte(fmt.Sprintf("%08d", i)), makeText(size-8)...) // messages differ a little
		}
		return makeText(size)
	case "binary":
		b := makeBinary(size)
		if size > 4 {
			binary.BigEndian.PutUint32(b, uint32(i))
		}
		return b
	case "random text":
		var b []byte
		for len(b) < size {
			var ru rune
			switch r.IntN(4) {
			case 0:
				ru = rune(0x20 + r.IntN(0x5f))
			case 1:
				ru = rune(0x80 + r.IntN(0x780))
			case 2:
				ru = rune(0x800 + r.IntN(0xd000))
			default:
				ru = rune(0x10000 + r.IntN(0xfffff))
			}
			b = utf8.AppendRune(b, ru)
		}
		for len(b) > size {
			_, n := utf8.DecodeLastRune(b)
			b = b[:len(b)-n]
		}
		return append(b, bytes.Repeat([]byte{'.'}, size-len(b))...)
	default:
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return b
	}
}

func deflSeries(kind string, size int, frags int, mixPlain bool) func() []deflMsg {
	return func() []deflMsg {
		op := opBinary
		if strings.Contains(kind, "text") {
			op = opText
		}
		var out []deflMsg
		for i := range deflCount(size) {
			out = append(out, deflMsg{op: op, p: deflPayload(kind, size, i), frags: frags, plain: mixPlain && i%3 == 1, pingsIn: frags > 1 && i%2 == 0})
		}
		return out
	}
}

// Section 12: payloads of every kind and size, default offer.
func deflPayloadRowsTable() []deflRow {
	var rows []deflRow
	for k, kind := range []string{"text", "binary", "random text", "random binary"} {
		for i, size := range deflSizes {
			rows = append(rows, deflRow{
				id: fmt.Sprintf("12.%d.%d", k+1, i+1), desc: fmt.Sprintf("%s, %d messages of %d bytes", kind, deflCount(size), size),
				offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC,
				msgs: deflSeries(kind, size, 1, false),
			})
		}
	}
	// 12.5: fragmented compressed messages, pings between fragments, and
	// plain messages between compressed ones.
	for i, size := range []int{64, 4096, 65536} {
		rows = append(rows, deflRow{
			id: fmt.Sprintf("12.5.%d", i+1), desc: fmt.Sprintf("text of %d bytes in 7 fragments, pings between, plain messages between", size),
			offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC,
			msgs: deflSeries("text", size, 7, true),
		})
		rows = append(rows, deflRow{
			id: fmt.Sprintf("12.5.%d", i+4), desc: fmt.Sprintf("binary of %d bytes in 3 fragments, plain messages between", size),
			offer: deflPMD + "; " + deflCNTC, wantExt: deflPMD + "; " + deflSNTC + "; " + deflCNTC,
			msgs: deflSeries("binary", size, 3, true),
		})
	}
	return rows
}

// Section 13: parameter combinations, each with every size.
func deflParamRowsTable() []deflRow {
	offers := []struct{ offer, want string }{
		{deflPMD, deflPMD + "; " + deflSNTC},
		{deflPMD + "; " + deflCNTC, deflPMD + "; " + deflSNTC + "; " + deflCNTC},
		{deflPMD + "; client_max_window_bits=9", deflPMD + "; " + deflSNTC},
		{deflPMD + "; client_max_window_bits", deflPMD + "; " + deflSNTC},
		{deflPMD + "; server_max_window_bits=9", deflPMD + "; " + deflSNTC + "; server_max_window_bits=9"},
		{deflPMD + "; server_max_window_bits=15; " + deflSNTC, deflPMD + "; " + deflSNTC + "; server_max_window_bits=15"},
		{deflPMD + "; server_max_window_bits=8; " + deflCNTC + "; client_max_window_bits=8", deflPMD + "; " + deflSNTC + "; " + deflCNTC + "; server_max_window_bits=8"},
		{deflPMD + "; server_max_window_bits=7, " + deflPMD + "; " + deflCNTC + ", " + deflPMD, deflPMD + "; " + deflSNTC + "; " + deflCNTC},
	}
	var rows []deflRow
	for o, of := range offers {
		for i, size := range deflSizes {
			kind := "text"
			if i%2 == 1 {
				kind = "binary"
			}
			rows = append(rows, deflRow{
				id: fmt.Sprintf("13.%d.%d", o+1, i+1), desc: fmt.Sprintf("offer %q, %s of %d bytes", of.offer, kind, size),
				offer: of.offer, wantExt: of.want,
				msgs: deflSeries(kind, size, 1, false),
			})
		}
	}
	// Declined offers: the connection goes on without compression.
	for i, offer := range []string{
		deflPMD + "; server_max_window_bits=7",
		deflPMD + "; " + deflSNTC + "; " + deflSNTC,
		deflPMD + "; client_max_window_bits=16",
		deflPMD + "; x_unknown",
		deflPMD + ";;",
		"x-webkit-deflate-frame",
	} {
		rows = append(rows, deflRow{
			id: fmt.Sprintf("13.9.%d", i+1), desc: fmt.Sprintf("offer %q is declined", offer),
			offer: offer, wantExt: "",
			msgs: func() []deflMsg {
				return []deflMsg{{op: opText, p: makeText(1000), plain: true}, {op: opBinary, p: makeBinary(5000), plain: true}}
			},
		})
	}
	return rows
}

// Violations of RFC 7692 (and of RFC 6455 inside compressed messages).
func deflViolationRowsTable() []deflRow {
	hello := []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}
	fr := func(fin bool, rsv, op byte, p []byte) []byte {
		return frame{fin: fin, rsv: rsv, op: op, payload: p}.encode()
	}
	return []deflRow{
		{id: "12.9.1", desc: "RSV1 without the extension", offer: "", raw: func(c *deflConn) [][]byte {
			return [][]byte{fr(true, 4, opText, hello)}
		}, close: codeProtocol},
		{id: "12.9.2", desc: "RSV1 on a ping", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, raw: func(c *deflConn) [][]byte {
			return [][]byte{fr(true, 4, opPing, nil)}
		}, close: codeProtocol},
		{id: "12.9.3", desc: "RSV1 on a close", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, raw: func(c *deflConn) [][]byte {
			return [][]byte{fr(true, 4, opClose, closePayload(1000, ""))}
		}, close: codeProtocol},
		{id: "12.9.4", desc: "RSV1 on a continuation", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, raw: func(c *deflConn) [][]byte {
			return [][]byte{fr(false, 4, opText, hello[:3]), fr(true, 4, opCont, hello[3:])}
		}, close: codeProtocol},
		{id: "12.9.5", desc: "RSV2 with the extension", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, raw: func(c *deflConn) [][]byte {
			return [][]byte{fr(true, 6, opText, hello)}
		}, close: codeProtocol},
		{id: "12.9.6", desc: "invalid DEFLATE data", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, raw: func(c *deflConn) [][]byte {
			return [][]byte{fr(true, 4, opBinary, []byte{0x07, 0x00, 0x11})}
		}, close: codeInvalidData},
		{id: "12.9.7", desc: "invalid UTF-8 in compressed text", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, raw: func(c *deflConn) [][]byte {
			return [][]byte{fr(true, 4, opText, c.compress([]byte("valid \xed\xa0\x80 not")))}
		}, close: codeInvalidData},
		{id: "12.9.8", desc: "compressed text cut inside a code point", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, raw: func(c *deflConn) [][]byte {
			return [][]byte{fr(true, 4, opText, c.compress([]byte("caf\xc3")))}
		}, close: codeInvalidData},
		{id: "12.9.9", desc: "compression bomb over the 16 MiB limit", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, raw: func(c *deflConn) [][]byte {
			// 17 MiB of zeros, each MiB compressed on its own: about 17 KiB.
			var b bytes.Buffer
			fw, _ := flate.NewWriter(&b, flate.BestCompression)
			_, _ = fw.Write(make([]byte, 1<<20))
			_ = fw.Flush()
			z := bytes.Repeat(b.Bytes(), 17)
			return [][]byte{fr(true, 4, opBinary, z[:len(z)-4])}
		}, close: codeTooBig},
		{id: "12.9.10", desc: "16 MiB exactly, compressed", offer: deflPMD, wantExt: deflPMD + "; " + deflSNTC, msgs: func() []deflMsg {
			return []deflMsg{{op: opBinary, p: make([]byte, maxPayload)}}
		}},
	}
}

func allDeflateSections() []struct {
	name string
	rows []deflRow
} {
	return []struct {
		name string
		rows []deflRow
	}{
		{"12_Compression", deflPayloadRowsTable()},
		{"13_CompressionParams", deflParamRowsTable()},
		{"12.9_CompressionViolations", deflViolationRowsTable()},
	}
}

// ---- the runner ----

func TestAutobahnDeflate(t *testing.T) {
	addr := deflServerUnderTest(t) // stopped by TestMain, so -count=N reuses it
	ids := map[string]bool{}
	for _, sec := range allDeflateSections() {
		for _, r := range sec.rows {
			if ids[r.id] {
				t.Fatalf("duplicate row id %s", r.id)
			}
			ids[r.id] = true
		}
	}
	for _, sec := range allDeflateSections() {
		t.Run(sec.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range sec.rows {
				t.Run(r.name(), func(t *testing.T) {
					t.Parallel()
					runDeflRow(t, addr, r)
				})
			}
		})
	}
}

func runDeflRow(t *testing.T, addr string, r deflRow) {
	c, err := deflDialWS(addr, r.offer)
	if err != nil {
		t.Fatalf("opening handshake: %v", err)
	}
	defer c.Close()
	if c.ext != r.wantExt {
		t.Fatalf("offer %q: server answered extensions %q, want %q", r.offer, c.ext, r.wantExt)
	}
	_ = c.nc.SetDeadline(time.Now().Add(60 * time.Second))

	var msgs []deflMsg
	var frames [][]byte
	if r.raw != nil {
		frames = r.raw(c)
	} else {
		msgs = r.msgs()
		for _, m := range msgs {
			frames = append(frames, c.encodeMsg(m)...)
		}
	}
	if r.close == 0 {
		frames = append(frames, closeF(codeNormal, "").encode())
	}
	writeDone := make(chan error, 1)
	go func() {
		var err error
		for _, b := range frames {
			if _, err = c.nc.Write(b); err != nil {
				break
			}
		}
		writeDone <- err
	}()
	defer func() { c.Close(); <-writeDone }()

	for i, m := range msgs {
		e, compressed, err := c.readDeflEvent()
		if err != nil {
			t.Fatalf("echo %d of %d: %v", i+1, len(msgs), err)
		}
		if e.kind != evMessage || e.op != m.op || !bytes.Equal(e.payload, m.p) {
			t.Fatalf("echo %d of %d: want %s message of %d bytes, got %s%s", i+1, len(msgs), opName(m.op), len(m.p), e, diffHint(m.p, e.payload))
		}
		if compressed && c.ext == "" {
			t.Fatalf("echo %d: compressed without the extension", i+1)
		}
	}
	want := r.close
	if want == 0 {
		want = codeNormal
	}
	e, _, err := c.readDeflEvent()
	if err != nil {
		t.Fatalf("waiting for close %d: %v", want, describeReadErr(err, 60*time.Second))
	}
	if err := closeWantFor(want).match(e); err != nil {
		t.Fatal(err)
	}
	if err := c.awaitTCPClose(tcpCloseTimeout); err != nil {
		t.Fatalf("after the close frame: %v", err)
	}
}

// encodeMsg frames one message: compressed when the extension was agreed
// and the message is not marked plain.
func (c *deflConn) encodeMsg(m deflMsg) [][]byte {
	p, rsv := m.p, byte(0)
	if c.ext != "" && !m.plain {
		p, rsv = c.compress(m.p), 4
	}
	n := max(1, min(m.frags, len(p)))
	var out [][]byte
	for i := range n {
		lo, hi := len(p)*i/n, len(p)*(i+1)/n
		f := frame{fin: i == n-1, op: opCont, payload: p[lo:hi]}
		if i == 0 {
			f.op, f.rsv = m.op, rsv
		}
		out = append(out, f.encode())
		if m.pingsIn && i < n-1 {
			out = append(out, ping([]byte("between")).encode())
		}
	}
	return out
}
