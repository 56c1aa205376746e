package main

import (
	"strings"
	"testing"

	"github.com/relaymail/relay/config"
)

func TestRestartOnly(t *testing.T) {
	base := config.Embedded()
	changed := *base
	changed.Server.Listen = "127.0.0.1:2626"
	changed.Server.MaxRecipients = 5
	changed.Server.SMTPSListen = "127.0.0.1:4650"
	changed.Server.DefaultProfile = "" // applied by a reload: not listed
	got := strings.Join(restartOnly(base, &changed), ",")
	if got != "server.listen,server.max_recipients,server.smtps_listen" {
		t.Fatalf("restartOnly = %q; want server.listen,server.max_recipients,server.smtps_listen", got)
	}
	if got := restartOnly(base, base); len(got) != 0 {
		t.Fatalf("restartOnly(same) = %q; want none", got)
	}
}
