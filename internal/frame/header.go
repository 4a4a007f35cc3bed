// Package frame owns every RFC 6455 rule ginws enforces: frame headers,
// masking, reserved bits and opcodes, control frames, fragmentation,
// message limits, UTF-8 of text messages and close payloads, and the
// opening handshake. It builds on the primitives of github.com/gobwas/ws
// (header types, opcodes and the in-place XOR cipher).
package frame

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

const (
	// MaxHeaderSize is the largest frame header: 2 + 8 length + 4 mask.
	MaxHeaderSize = 14
	// MaxControlPayload is the largest payload of a control frame.
	MaxControlPayload = 125
	// RSV1 is the bit permessage-deflate uses, as it sits in ws.Header.Rsv.
	RSV1 byte = 0x4
)

// HeaderSize is the size of the header of a frame carrying n bytes.
func HeaderSize(n int, masked bool) int {
	size := 2
	switch {
	case n > 0xFFFF:
		size += 8
	case n > 125:
		size += 2
	}
	if masked {
		size += 4
	}
	return size
}

// AppendHeader appends a frame header with the minimal length encoding.
// A nil mask writes an unmasked (server) frame.
func AppendHeader(b []byte, fin bool, rsv byte, op ws.OpCode, n int, mask *[4]byte) []byte {
	b0 := byte(op) | rsv<<4
	if fin {
		b0 |= 0x80
	}
	var m byte
	if mask != nil {
		m = 0x80
	}
	switch {
	case n > 0xFFFF:
		b = append(b, b0, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	case n > 125:
		b = append(b, b0, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, b0, m|byte(n))
	}
	if mask != nil {
		b = append(b, mask[:]...)
	}
	return b
}

// AppendFrame appends a whole frame: header and payload, masking the
// copied payload when mask is not nil.
func AppendFrame(b []byte, fin bool, rsv byte, op ws.OpCode, p []byte, mask *[4]byte) []byte {
	b = AppendHeader(b, fin, rsv, op, len(p), mask)
	start := len(b)
	b = append(b, p...)
	if mask != nil {
		ws.Cipher(b[start:], *mask, 0)
	}
	return b
}

// parseHeader decodes a header from b. It returns the header size, or 0
// when b holds only part of it.
func parseHeader(b []byte) (h ws.Header, size int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] >> 4) & 0x7
	h.OpCode = ws.OpCode(b[0] & 0x0F)
	h.Masked = b[1]&0x80 != 0
	size = 2
	n := b[1] & 0x7F
	switch n {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if h.Masked {
		size += 4
	}
	if len(b) < size {
		return h, 0, nil
	}
	switch n {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		l := binary.BigEndian.Uint64(b[2:])
		if l>>63 != 0 {
			return h, size, ErrLengthOverflow
		}
		h.Length = int64(l)
	default:
		h.Length = int64(n)
	}
	if h.Masked {
		copy(h.Mask[:], b[size-4:size])
	}
	return h, size, nil
}

// headerSizeFrom tells from the first two bytes how long the header is.
func headerSizeFrom(b0, b1 byte) int {
	size := 2
	switch b1 & 0x7F {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if b1&0x80 != 0 {
		size += 4
	}
	return size
}
