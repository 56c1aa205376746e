package config_test

import (
	"errors"
	"testing"

	"github.com/relaymail/relay/config"
)

// TestDecodeServer: relay sendmail's view of a file is [server] alone, on
// its defaults; the rest is not validated and no *_file is read, but a
// file that is not TOML still gets FILE:LINE.
func TestDecodeServer(t *testing.T) {
	s, err := config.DecodeServer("relay.toml", []byte("[server]\nlisten = \"127.0.0.1:2626\"\n\n[[profiles]]\nname = \"x\"\npassword_file = \"/nonexistent/only-relay-reads-this\"\n"))
	if err != nil || s.Listen != "127.0.0.1:2626" {
		t.Errorf("DecodeServer(listen, invalid profile) = %q, %v; want 127.0.0.1:2626, nil", s.Listen, err)
	}
	s, err = config.DecodeServer("relay.toml", []byte("[queue]\nmin_backoff = \"1m\"\n"))
	if err != nil || s.Listen != config.Embedded().Server.Listen || s.MaxMessageBytes <= 0 {
		t.Errorf("DecodeServer(no [server]) = %+v, %v; want the defaults", s, err)
	}
	_, err = config.DecodeServer("relay.toml", []byte("[server]\nlisten = 2525\n"))
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].String() == "" || ce.Problems[0].Line != 2 || ce.Problems[0].Key != "server.listen" {
		t.Errorf("DecodeServer(listen = 2525) = %v; want relay.toml:2: server.listen: ...", err)
	}
}
