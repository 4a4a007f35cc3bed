package frame

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// benchText is 16 KiB of the given kind.
func benchText(kind string) []byte {
	var unit string
	switch kind {
	case "ascii":
		unit = "The quick brown fox jumps over the lazy dog. 0123456789\n"
	case "mixed":
		// Latin with accents, Cyrillic, CJK and an emoji: 1- to 4-byte runes.
		unit = "Gr\u00fc\u00dfe, \u041f\u0440\u0438\u0432\u0435\u0442, \u4f60\u597d\u4e16\u754c \U0001F600 caf\u00e9 na\u00efve. "
	}
	s := strings.Repeat(unit, 16<<10/len(unit)+1)
	s = s[:16<<10]
	s = s[:len(s)-IncompleteTail([]byte(s))]
	return []byte(s)
}

func BenchmarkUTF8(b *testing.B) {
	for _, kind := range []string{"ascii", "mixed"} {
		p := benchText(kind)
		if !utf8.Valid(p) {
			b.Fatal("bench text is not UTF-8")
		}
		b.Run(kind+"/UTF8.Write", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				var v UTF8
				if !v.Write(p) || !v.Complete() {
					b.Fatal("rejected")
				}
			}
		})
		b.Run(kind+"/UTF8.Write-1KiB-chunks", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				var v UTF8
				for i := 0; i < len(p); i += 1 << 10 {
					if !v.Write(p[i:min(i+1<<10, len(p))]) {
						b.Fatal("rejected")
					}
				}
				if !v.Complete() {
					b.Fatal("incomplete")
				}
			}
		})
		b.Run(kind+"/utf8.Valid", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if !utf8.Valid(p) {
					b.Fatal("rejected")
				}
			}
		})
	}
}

func BenchmarkReader(b *testing.B) {
	sizes := []struct {
		name string
		n    int
	}{{"64B", 64}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}}
	for _, op := range []ws.OpCode{ws.OpBinary, ws.OpText} {
		opName := map[ws.OpCode]string{ws.OpBinary: "binary", ws.OpText: "text"}[op]
		for _, sz := range sizes {
			payload := bytes.Repeat([]byte("abcdefgh"), sz.n/8)
			mask := [4]byte{0x12, 0x34, 0x56, 0x78}
			// 16 messages per pass, so the bufio refill is amortised as on
			// a real connection.
			const perPass = 16
			var wire []byte
			for range perPass {
				wire = AppendFrame(wire, true, 0, op, payload, &mask)
			}
			b.Run(opName+"/"+sz.name, func(b *testing.B) {
				src := bytes.NewReader(wire)
				br := bufio.NewReaderSize(src, 4096)
				r := NewReader(br)
				r.Limit = 1 << 20
				buf := make([]byte, 32<<10)
				b.ReportAllocs()
				b.SetBytes(int64(sz.n))
				i := 0
				for b.Loop() {
					if i%perPass == 0 {
						src.Reset(wire)
						br.Reset(src)
						r.Reset(br)
					}
					i++
					if _, err := r.NextMessage(); err != nil {
						b.Fatal(err)
					}
					total := 0
					for {
						n, err := r.Read(buf)
						total += n
						if err == io.EOF {
							break
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					if total != sz.n {
						b.Fatalf("read %d bytes, want %d", total, sz.n)
					}
				}
			})
		}
	}
}
