//go:build linux

package queue

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

// TestQueueBounceNotWrittenKeepsMessage: when the bounce for a refused
// recipient cannot be queued (the disk is full), the message stays queued
// and is tried again, so the sender still learns of the failure. It used
// to be removed all the same: a message that had been given 250 was
// neither delivered nor bounced, only logged.
func TestQueueBounceNotWrittenKeepsMessage(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tiny tmpfs to fill up (needs root): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	inRcpt := make(chan struct{}, 1)
	proceed := make(chan struct{}, 1)
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		if to != "gone@example.com" {
			return nil
		}
		inRcpt <- struct{}{}
		<-proceed
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	}})
	sp := testpeer.OpenSpool(t, filepath.Join(mnt, "spool"))
	h := startQueue(t, testConfig(t, u.Addr, slowBackoff...), sp, Options{})

	id := h.submit(t, "alarms@plant.example.com", "gone@example.com")
	<-inRcpt
	// Fill the disk to the last page, then let the upstream refuse.
	var fillers []string
	for i := 0; ; i++ {
		name := filepath.Join(mnt, fmt.Sprintf("filler%d", i))
		if err := os.WriteFile(name, bytes.Repeat([]byte("f"), os.Getpagesize()), 0o600); err != nil {
			os.Remove(name)
			break
		}
		fillers = append(fillers, name)
	}
	proceed <- struct{}{}
	testpeer.WaitFor(t, "the failed bounce", 5*time.Second, func() bool { return strings.Contains(h.logs.String(), "cannot queue a bounce") })
	time.Sleep(100 * time.Millisecond)
	env, err := sp.Envelope(id)
	if err != nil {
		t.Fatalf("the bounce could not be queued, and the message is gone from the spool (%v); want it queued", err)
	}
	if env.Recipients[0].State != spool.Pending {
		t.Errorf("recipient %v; want pending", env.Recipients[0].State)
	}

	// Room again: the next attempt bounces, and the bounce goes out.
	for _, name := range fillers {
		os.Remove(name)
	}
	proceed <- struct{}{}
	testpeer.WaitFor(t, "the message to be queued again", 5*time.Second, func() bool {
		_, err := h.q.Retry(context.Background(), id)
		return err == nil
	})
	<-inRcpt
	dsn := u.WaitMessages(t, 1, 10*time.Second)[0]
	if len(dsn.To) != 1 || dsn.To[0] != "alarms@plant.example.com" || !strings.Contains(string(dsn.Data), "Final-Recipient: rfc822; gone@example.com") {
		t.Fatalf("upstream got %+v; want the bounce to the sender", dsn)
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}
