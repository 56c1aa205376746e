package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// BenchmarkRelayInbound: relay's own receiving path, end to end over
// loopback: a client sends messages to a relay Server in queue mode whose
// spool does not fsync (the disk would drown the CPU cost) and whose queue
// does not run, so what is measured is relay reading the message (line
// gate, DATA reader, CRLF normaliser, header limit) and writing it to the
// spool, and the replies it writes. Each message is one pipelined
// MAIL/RCPT/DATA group (RFC 2920); 10KiB sends 50 such groups per
// connection, as smtp-source -s does.
func BenchmarkRelayInbound(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
		bdat bool
	}{
		{"DATA-1MiB", 1 << 20, false},
		{"BDAT-1MiB", 1 << 20, true},
		{"DATA-10KiB", 10 << 10, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := startBenchRelay(b)
			body := benchMessage(bc.size)
			stuffed := bytes.ReplaceAll(body, []byte("\r\n."), []byte("\r\n.."))
			var c net.Conn
			var r *bufio.Reader
			sent := 0
			dial := func() {
				if c != nil {
					fmt.Fprintf(c, "QUIT\r\n")
					c.Close()
				}
				var err error
				if c, err = net.Dial("tcp", addr); err != nil {
					b.Fatal(err)
				}
				r = bufio.NewReader(c)
				benchExpect(b, r, "220")
				fmt.Fprintf(c, "EHLO bench\r\n")
				benchExpect(b, r, "250")
			}
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if c == nil || sent%50 == 0 {
					dial()
				}
				sent++
				var head, tail []byte
				msg := stuffed
				if bc.bdat {
					head, msg = fmt.Appendf(nil, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT %d LAST\r\n", len(body)), body
				} else {
					head, tail = []byte("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"), []byte(".\r\n")
				}
				bufs := net.Buffers{head, msg, tail}
				if _, err := bufs.WriteTo(c); err != nil {
					b.Fatal(err)
				}
				benchExpect(b, r, "250")
				benchExpect(b, r, "250")
				if !bc.bdat {
					benchExpect(b, r, "354")
				}
				benchExpect(b, r, "250")
			}
		})
	}
}

// startBenchRelay starts a relay Server in queue mode with a spool that
// does not fsync and a queue that does not run.
func startBenchRelay(b *testing.B) string {
	b.Helper()
	cfg, err := config.Parse("bench.toml", []byte(fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "q"
allow_unauthenticated = ["127.0.0.0/8"]
max_message_bytes = 67108864

[[profiles]]
name = "q"
hostname = "127.0.0.1"
port = 9
`, b.TempDir())))
	if err == nil {
		err = cfg.Resolve()
	}
	if err != nil {
		b.Fatal(err)
	}
	sp, err := spool.Open(b.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	srv, err := NewServer(cfg, Options{Spool: sp, Logger: logger, Transports: Transports(upstream.Options{Logger: logger}, nil)})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close(); sp.Close() })
	return ln.Addr().String()
}

// benchExpect reads one reply and fails unless its code is code.
func benchExpect(b *testing.B, r *bufio.Reader, code string) {
	b.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, code) {
			b.Fatalf("got %q, %v; want %s", line, err, code)
		}
		if line[3] == ' ' {
			return
		}
	}
}
