package frame

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidCloseCodeEveryValue(t *testing.T) {
	// RFC 6455 section 7.4: 1000-1003 and 1007-1011 are defined, 1012-1014
	// registered with IANA, 1004 reserved, 1005/1006/1015 never sent,
	// 1016-2999 reserved for the protocol, 3000-4999 for libraries and
	// applications, anything under 1000 or over 4999 unused.
	valid := func(c int) bool {
		return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
	}
	for c := range 1 << 16 {
		if got := ValidCloseCode(uint16(c)); got != valid(c) {
			t.Fatalf("ValidCloseCode(%d) = %v", c, got)
		}
	}
	for _, c := range []uint16{CloseNoStatus, CloseAbnormal, CloseTLSHandshake} {
		assert.Falsef(t, ValidCloseCode(c), "%d is reported locally, never sent", c)
	}
	for _, c := range []uint16{
		CloseNormal, CloseGoingAway, CloseProtocolError, CloseUnsupportedData,
		CloseInvalidPayload, ClosePolicyViolation, CloseMessageTooBig,
		CloseMandatoryExt, CloseInternalError, CloseServiceRestart,
		CloseTryAgainLater, CloseBadGateway,
	} {
		assert.Truef(t, ValidCloseCode(c), "%d", c)
	}
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		code   uint16
		reason string
		err    error
	}{
		{"empty is no status", nil, CloseNoStatus, "", nil},
		{"one byte", []byte{0x03}, 0, "", ErrCloseOneByte},
		{"normal", closePayload(1000, ""), 1000, "", nil},
		{"normal with reason", closePayload(1000, "bye"), 1000, "bye", nil},
		{"multi-byte reason", closePayload(1001, "h\u00e9 \U0001F44B"), 1001, "h\u00e9 \U0001F44B", nil},
		{"1003", closePayload(1003, ""), 1003, "", nil},
		{"1007", closePayload(1007, ""), 1007, "", nil},
		{"1014", closePayload(1014, ""), 1014, "", nil},
		{"3000", closePayload(3000, ""), 3000, "", nil},
		{"4999", closePayload(4999, "x"), 4999, "x", nil},
		{"0", closePayload(0, ""), 0, "", ErrInvalidCloseCode},
		{"999", closePayload(999, ""), 0, "", ErrInvalidCloseCode},
		{"1004 reserved", closePayload(1004, ""), 0, "", ErrInvalidCloseCode},
		{"1005 not on the wire", closePayload(1005, ""), 0, "", ErrInvalidCloseCode},
		{"1006 not on the wire", closePayload(1006, ""), 0, "", ErrInvalidCloseCode},
		{"1015 not on the wire", closePayload(1015, ""), 0, "", ErrInvalidCloseCode},
		{"1016", closePayload(1016, ""), 0, "", ErrInvalidCloseCode},
		{"2999", closePayload(2999, ""), 0, "", ErrInvalidCloseCode},
		{"5000", closePayload(5000, ""), 0, "", ErrInvalidCloseCode},
		{"65535", closePayload(65535, ""), 0, "", ErrInvalidCloseCode},
		{"code checked before reason", closePayload(999, "\xff"), 0, "", ErrInvalidCloseCode},
		{"bad reason", closePayload(1000, "\xff"), 0, "", ErrCloseReasonUTF8},
		{"surrogate reason", closePayload(1000, "\xed\xa0\x80"), 0, "", ErrCloseReasonUTF8},
		{"truncated reason", closePayload(1000, "ok\xe2\x82"), 0, "", ErrCloseReasonUTF8},
		{"max control payload", closePayload(1000, strings.Repeat("a", 123)), 1000, strings.Repeat("a", 123), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClose(tc.in)
			require.Truef(t, err == tc.err, "err = %v, want %v", err, tc.err)
			assert.Equal(t, tc.code, code)
			assert.Equal(t, tc.reason, string(reason))
			if err == nil && len(tc.in) > 2 {
				// The reason aliases the payload.
				assert.Same(t, &tc.in[2], &reason[0])
			}
		})
	}
}

func TestCloseErrorClasses(t *testing.T) {
	assert.True(t, errors.Is(ErrCloseOneByte, ErrProtocol))
	assert.True(t, errors.Is(ErrInvalidCloseCode, ErrProtocol))
	assert.True(t, errors.Is(ErrCloseReasonUTF8, ErrInvalidUTF8), "a bad close reason is a 1007")
	assert.False(t, errors.Is(ErrCloseReasonUTF8, ErrProtocol))
}

func TestAppendClose(t *testing.T) {
	tests := []struct {
		name   string
		code   uint16
		reason string
		want   []byte
	}{
		{"no status is empty", CloseNoStatus, "ignored", []byte{}},
		{"code only", CloseNormal, "", []byte{0x03, 0xE8}},
		{"code and reason", CloseGoingAway, "bye", []byte{0x03, 0xE9, 'b', 'y', 'e'}},
		{"private code", 4000, "x", []byte{0x0F, 0xA0, 'x'}},
		{"123 bytes fit", CloseNormal, strings.Repeat("r", 123), closePayload(CloseNormal, strings.Repeat("r", 123))},
		{"124 bytes cut", CloseNormal, strings.Repeat("r", 124), closePayload(CloseNormal, strings.Repeat("r", 123))},
		{"3-byte rune across the cut", CloseNormal, strings.Repeat("r", 122) + "\u20ac", closePayload(CloseNormal, strings.Repeat("r", 122))},
		{"3-byte rune ending at the cut", CloseNormal, strings.Repeat("r", 120) + "\u20ac" + "tail", closePayload(CloseNormal, strings.Repeat("r", 120)+"\u20ac")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("keep")
			got := AppendClose(append([]byte(nil), prefix...), tc.code, tc.reason)
			require.Equal(t, prefix, got[:len(prefix)], "AppendClose must append")
			assert.Equal(t, tc.want, got[len(prefix):])

			// The same payload as a whole server frame, read back by the
			// Reader's own header parser.
			f := AppendCloseFrame(append([]byte(nil), prefix...), tc.code, tc.reason)
			require.Equal(t, prefix, f[:len(prefix)], "AppendCloseFrame must append")
			h, n, err := parseHeader(f[len(prefix):])
			require.NoError(t, err)
			assert.Equal(t, ws.Header{Fin: true, OpCode: ws.OpClose, Length: int64(len(tc.want))}, h)
			assert.Equal(t, tc.want, f[len(prefix)+n:])
		})
	}
}

func TestAppendCloseTruncatesOnRuneBoundary(t *testing.T) {
	runes := []string{"\u00e9", "\u20ac", "\U0001F600", "a"}
	for _, r := range runes {
		for pad := range 4 {
			for extra := range 40 {
				reason := strings.Repeat("a", pad) + strings.Repeat(r, 30+extra)
				p := AppendClose(nil, CloseGoingAway, reason)
				require.LessOrEqual(t, len(p), MaxControlPayload)
				code, got, err := ParseClose(p)
				require.NoError(t, err, "the payload must pass ParseClose: %q", p)
				require.Equal(t, CloseGoingAway, code)
				require.True(t, utf8.Valid(got))
				require.True(t, strings.HasPrefix(reason, string(got)), "the reason is a prefix of the original")
				if len(reason) <= MaxControlPayload-2 {
					require.Equal(t, reason, string(got), "a short reason is kept whole")
				} else {
					// Cut at most a partial rune (3 bytes) short of 123.
					require.GreaterOrEqual(t, len(got), MaxControlPayload-2-(utf8.UTFMax-1))
				}
			}
		}
	}
}

func TestAppendCloseRoundTrip(t *testing.T) {
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4242, 4999} {
		for _, reason := range []string{"", "x", "going away", "\u00fcber", strings.Repeat("\u20ac", 41)} {
			p := AppendClose(nil, code, reason)
			c, r, err := ParseClose(p)
			require.NoError(t, err)
			require.Equal(t, code, c)
			require.Equal(t, reason, string(r))
		}
	}
	c, r, err := ParseClose(AppendClose(nil, CloseNoStatus, "dropped"))
	require.NoError(t, err)
	assert.Equal(t, CloseNoStatus, c)
	assert.Empty(t, r)
}
