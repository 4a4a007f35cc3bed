package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHeaderRoundTrip(t *testing.T) {
	lengths := []struct {
		n        int
		lenBytes int  // extended length bytes
		marker   byte // the 7-bit length field
	}{
		{0, 0, 0},
		{1, 0, 1},
		{125, 0, 125},
		{126, 2, 126},
		{127, 2, 126},
		{65535, 2, 126},
		{65536, 8, 127},
		{1 << 32, 8, 127},
		{math.MaxInt64, 8, 127},
	}
	mask := [4]byte{0xA1, 0xB2, 0xC3, 0xD4}
	for _, l := range lengths {
		for _, masked := range []bool{false, true} {
			var m *[4]byte
			if masked {
				m = &mask
			}
			wantSize := 2 + l.lenBytes
			if masked {
				wantSize += 4
			}
			require.Equalf(t, wantSize, HeaderSize(l.n, masked), "HeaderSize(%d, %v)", l.n, masked)

			b := AppendHeader([]byte("x"), true, 0, ws.OpBinary, l.n, m)
			require.Equal(t, byte('x'), b[0], "AppendHeader must append")
			b = b[1:]
			require.Len(t, b, wantSize)
			require.Equal(t, byte(0x82), b[0])
			require.Equal(t, l.marker, b[1]&0x7F)
			require.Equal(t, masked, b[1]&0x80 != 0)
			switch l.lenBytes {
			case 2:
				require.Equal(t, uint16(l.n), binary.BigEndian.Uint16(b[2:]))
			case 8:
				require.Equal(t, uint64(l.n), binary.BigEndian.Uint64(b[2:]))
			}
			require.Equal(t, wantSize, headerSizeFrom(b[0], b[1]))

			h, size, err := parseHeader(b)
			require.NoError(t, err)
			require.Equal(t, wantSize, size)
			assert.Equal(t, ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: masked, Mask: maskOrZero(m), Length: int64(l.n)}, h)

			// Any strict prefix is "not enough bytes yet", never an error.
			for i := range b {
				_, size, err := parseHeader(b[:i])
				require.NoErrorf(t, err, "prefix %d of %x", i, b)
				require.Zerof(t, size, "prefix %d of %x", i, b)
			}
			// Bytes after the header are not part of it.
			_, size, err = parseHeader(append(b, 0xFF, 0xFF))
			require.NoError(t, err)
			require.Equal(t, wantSize, size)
		}
	}
}

func maskOrZero(m *[4]byte) [4]byte {
	if m == nil {
		return [4]byte{}
	}
	return *m
}

func TestHeaderBitsRoundTrip(t *testing.T) {
	ops := []ws.OpCode{ws.OpContinuation, ws.OpText, ws.OpBinary, 3, 7, ws.OpClose, ws.OpPing, ws.OpPong, 0xB, 0xF}
	for _, op := range ops {
		for rsv := byte(0); rsv < 8; rsv++ {
			for _, fin := range []bool{false, true} {
				b := AppendHeader(nil, fin, rsv, op, 5, nil)
				h, size, err := parseHeader(b)
				require.NoError(t, err)
				require.Equal(t, 2, size)
				require.Equal(t, ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Length: 5}, h)
				// Same layout as the gobwas/ws writer.
				var ref bytes.Buffer
				require.NoError(t, ws.WriteHeader(&ref, ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Length: 5}))
				require.Equal(t, ref.Bytes(), b)
			}
		}
	}
	require.Equal(t, byte(0x40), AppendHeader(nil, false, RSV1, ws.OpContinuation, 0, nil)[0], "RSV1 is bit 6 of the first byte")
}

func TestHeaderMatchesGobwas(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 125, 126, 65535, 65536, 1 << 32} {
		for _, masked := range []bool{false, true} {
			h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(n), Masked: masked}
			var m *[4]byte
			if masked {
				h.Mask, m = mask, &mask
			}
			var ref bytes.Buffer
			require.NoError(t, ws.WriteHeader(&ref, h))
			require.Equal(t, ref.Bytes(), AppendHeader(nil, true, 0, ws.OpText, n, m))
			require.Equal(t, ws.HeaderSize(h), HeaderSize(n, masked))
		}
	}
}

func TestParseHeaderLengthMSB(t *testing.T) {
	for _, masked := range []bool{false, true} {
		b := []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}
		if masked {
			b[1] |= 0x80
			b = append(b, 1, 2, 3, 4)
		}
		_, size, err := parseHeader(b)
		require.True(t, err == ErrLengthOverflow, "err = %v", err)
		assert.Equal(t, len(b), size)
		// The largest legal length passes.
		b[2] = 0x7F
		h, _, err := parseHeader(b)
		require.NoError(t, err)
		require.Equal(t, int64(0x7F00000000000000), h.Length)
	}
}

func TestAppendFrameMasksPayload(t *testing.T) {
	payload := []byte("The quick brown fox jumps over the lazy dog")
	mask := [4]byte{0xDE, 0xAD, 0xBE, 0xEF}
	b := AppendFrame(nil, true, 0, ws.OpText, payload, &mask)
	require.Len(t, b, 6+len(payload))
	h, size, err := parseHeader(b)
	require.NoError(t, err)
	require.Equal(t, 6, size)
	require.Equal(t, int64(len(payload)), h.Length)
	body := b[size:]
	require.NotEqual(t, payload, body, "the payload on the wire is masked")
	for i := range body {
		require.Equal(t, payload[i]^mask[i%4], body[i])
	}
	require.Equal(t, "The quick brown fox jumps over the lazy dog", string(payload), "the caller's payload is untouched")

	b = AppendFrame(nil, false, 0, ws.OpBinary, payload, nil)
	require.Equal(t, payload, b[2:])
	require.Equal(t, byte(0x02), b[0])
}

func TestErrorClasses(t *testing.T) {
	rules := []struct {
		err   *Error
		class *Error
	}{
		{ErrUnmasked, ErrProtocol},
		{ErrMasked, ErrProtocol},
		{ErrReservedBits, ErrProtocol},
		{ErrReservedOpcode, ErrProtocol},
		{ErrControlTooLong, ErrProtocol},
		{ErrControlFragmented, ErrProtocol},
		{ErrUnexpectedContinuation, ErrProtocol},
		{ErrExpectedContinuation, ErrProtocol},
		{ErrLengthOverflow, ErrProtocol},
		{ErrCloseOneByte, ErrProtocol},
		{ErrInvalidCloseCode, ErrProtocol},
		{ErrCompressedControl, ErrProtocol},
		{ErrCloseReasonUTF8, ErrInvalidUTF8},
		{ErrProtocol, ErrProtocol},
		{ErrInvalidUTF8, ErrInvalidUTF8},
		{ErrMessageTooBig, ErrMessageTooBig},
	}
	classes := []*Error{ErrProtocol, ErrInvalidUTF8, ErrMessageTooBig}
	for _, r := range rules {
		for _, c := range classes {
			assert.Equalf(t, r.class == c, errors.Is(r.err, c), "errors.Is(%q, %q)", r.err.Reason, c.Reason)
		}
		// A rule is matched exactly, never by another rule of its class.
		for _, o := range rules {
			if o.err != r.err && o.err != o.class {
				assert.Falsef(t, errors.Is(r.err, o.err), "errors.Is(%q, %q)", r.err.Reason, o.err.Reason)
			}
		}
		assert.Contains(t, r.err.Error(), "websocket: ")
		assert.Contains(t, r.err.Error(), r.err.Reason)
	}
	// A look-alike that is not one of the sentinels matches nothing.
	assert.False(t, errors.Is(ErrUnmasked, &Error{CloseProtocolError, "protocol error"}))
	assert.False(t, errors.Is(ErrUnmasked, errors.New("protocol error")))
	var e *Error
	require.True(t, errors.As(error(ErrMasked), &e))
	assert.Equal(t, CloseProtocolError, e.Code)
}
