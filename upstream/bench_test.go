package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
)

// startFastSink is a minimal SMTP server that discards messages as fast as
// it can, so that a benchmark measures the client: PIPELINING always,
// CHUNKING when chunking is set.
func startFastSink(b *testing.B, chunking bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	ehlo := "250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
	if chunking {
		ehlo += "250-CHUNKING\r\n"
	}
	ehlo += "250 SIZE 0\r\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFastSink(c, ehlo)
		}
	}()
	return ln.Addr().String()
}

func serveFastSink(c net.Conn, ehlo string) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriter(c)
	reply := func(s string) {
		w.WriteString(s)
		if r.Buffered() == 0 { // flush once the pipelined group is answered
			w.Flush()
		}
	}
	reply("220 sink ESMTP\r\n")
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply(ehlo)
		case "DATA":
			reply("354 go on\r\n")
			w.Flush()
			for {
				l, err := r.ReadSlice('\n')
				if err == bufio.ErrBufferFull {
					continue
				}
				if err != nil {
					return
				}
				if string(l) == ".\r\n" {
					break
				}
			}
			reply("250 2.0.0 ok\r\n")
		case "BDAT":
			f := strings.Fields(arg)
			n, _ := strconv.ParseInt(f[0], 10, 64)
			if _, err := io.CopyN(io.Discard, r, n); err != nil {
				return
			}
			reply("250 2.0.0 ok\r\n")
		case "QUIT":
			reply("221 bye\r\n")
			w.Flush()
			return
		default:
			reply("250 ok\r\n")
		}
	}
}

// BenchmarkSend measures the client sending one message after another on
// one connection: bytes/s and allocations per message, with DATA
// (dot-stuffing) and with BDAT.
func BenchmarkSend(b *testing.B) {
	for _, size := range []int{10 << 10, 1 << 20} {
		body := corpusOfSize(size)
		for _, mode := range []string{"DATA", "BDAT"} {
			b.Run(mode+"/"+strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
				addr := startFastSink(b, mode == "BDAT")
				host, port, _ := net.SplitHostPort(addr)
				p := profileFor(&testpeer.Upstream{Host: host}, func(*config.Profile) {})
				p.Port, _ = strconv.Atoi(port)
				s, err := New(p, Options{})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				c, err := s.Dial(ctx)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				msg := &Message{From: "app@example.com", To: []string{"ops@example.com"}, Size: int64(len(body))}
				rd := bytes.NewReader(body)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					rd.Reset(body)
					msg.Body = rd
					if _, err := c.Send(ctx, msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// corpusOfSize is a text message of about size bytes, in lines of 76.
func corpusOfSize(size int) []byte {
	var buf bytes.Buffer
	buf.WriteString("From: app@example.com\r\nTo: ops@example.com\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 5)[:76] + "\r\n"
	for buf.Len() < size {
		buf.WriteString(line)
		if buf.Len()%7 == 0 {
			buf.WriteString(".dot line\r\n")
		}
	}
	return buf.Bytes()
}
