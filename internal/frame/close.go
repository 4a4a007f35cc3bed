package frame

import (
	"encoding/binary"
	"strings"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// ValidCloseCode reports whether code may appear in a close frame on the
// wire: 1000-1003, 1007-1014 and the registered/private ranges 3000-4999.
func ValidCloseCode(code uint16) bool {
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

// ParseClose checks a received close payload. An empty payload reports
// CloseNoStatus. The reason aliases p.
func ParseClose(p []byte) (code uint16, reason []byte, err error) {
	switch len(p) {
	case 0:
		return CloseNoStatus, nil, nil
	case 1:
		return 0, nil, ErrCloseOneByte
	}
	code = binary.BigEndian.Uint16(p)
	if !ValidCloseCode(code) {
		return 0, nil, ErrInvalidCloseCode
	}
	reason = p[2:]
	if !ValidUTF8(reason) {
		return 0, nil, ErrCloseReasonUTF8
	}
	return code, reason, nil
}

// AppendCloseFrame appends a whole unmasked close frame (a server's) with
// AppendClose's payload.
func AppendCloseFrame(b []byte, code uint16, reason string) []byte {
	b = append(b, 0x80|byte(ws.OpClose), 0)
	start := len(b)
	b = AppendClose(b, code, reason)
	b[start-1] = byte(len(b) - start)
	return b
}

// AppendClose appends a close payload. CloseNoStatus yields an empty
// payload; bytes of the reason that are not UTF-8 become U+FFFD (a peer
// must fail a reason that is not UTF-8), and it is cut to fit a control
// frame on a UTF-8 boundary.
func AppendClose(b []byte, code uint16, reason string) []byte {
	if code == CloseNoStatus {
		return b
	}
	if !utf8.ValidString(reason) {
		reason = strings.ToValidUTF8(reason, string(utf8.RuneError))
	}
	if len(reason) > MaxControlPayload-2 {
		reason = reason[:MaxControlPayload-2]
		reason = reason[:len(reason)-IncompleteTail([]byte(reason))]
	}
	b = binary.BigEndian.AppendUint16(b, code)
	return append(b, reason...)
}
