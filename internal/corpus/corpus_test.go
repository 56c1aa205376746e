package corpus

import (
	"bytes"
	"testing"
)

func TestWireAndWant(t *testing.T) {
	m := &Message{Data: []byte(".a\r\nb\n.c\r\n..\r\n.")}
	if got, want := string(m.Wire()), "..a\r\nb\n.c\r\n...\r\n..\r\n.\r\n"; got != want {
		t.Errorf("Wire = %q; want %q", got, want)
	}
	if got, want := string(m.Want()), ".a\r\nb\r\n.c\r\n..\r\n.\r\n"; got != want {
		t.Errorf("Want = %q; want %q", got, want)
	}
	if got, ok := AfterReceived([]byte("Received: from x\r\n\tby y;\r\n\tdate\r\nSubject: s\r\n")); !ok || string(got) != "Subject: s\r\n" {
		t.Errorf("AfterReceived = %q, %v", got, ok)
	}
}

func TestCorpus(t *testing.T) {
	names := map[string]bool{}
	for _, m := range All() {
		if names[m.Name] {
			t.Errorf("two messages named %q", m.Name)
		}
		names[m.Name] = true
		if !bytes.HasSuffix(m.Wire(), []byte("\r\n.\r\n")) {
			t.Errorf("%s: Wire does not end with CRLF.CRLF", m.Name)
		}
	}
	for _, want := range []string{"empty body", "5 MB attachment", "4095 bytes", "4097 bytes", "32767 bytes", "32769 bytes", "65535 bytes", "65537 bytes"} {
		if !names[want] {
			t.Errorf("corpus lacks %q", want)
		}
	}
	for _, m := range All() {
		if m.Name == "4095 bytes" && len(m.Data) != 4095 {
			t.Errorf("4095 bytes: %d bytes", len(m.Data))
		}
	}
}
