//go:build linux

package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// mountTiny mounts a 64 KiB tmpfs on a new directory and unmounts it when
// the test ends, or skips the test when mounting is impossible (not root,
// no CAP_SYS_ADMIN).
func mountTiny(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tiny tmpfs to fill up (needs root): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull fills a tiny filesystem with messages of growing size: every
// attempt either queues a complete message or fails with ENOSPC leaving
// nothing behind, whether the message's write, its fsync or an update's
// envelope is the one that finds the disk full.
func TestDiskFull(t *testing.T) {
	mnt := mountTiny(t)
	dir := filepath.Join(mnt, "spool")
	s := openSpool(t, dir, Options{})
	ctx := context.Background()

	var queued, failedWrite, failedCommit int
	for size := 100; size < 40_000; size += 1500 {
		body := bytes.Repeat([]byte("z"), size)
		w, err := s.Create(ctx, testEnvelope())
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Create() = %v; want ENOSPC", err)
			}
			failedCommit++
			continue
		}
		var id string
		if _, err = w.Write(body); err != nil {
			failedWrite++
			w.Abort()
		} else if id, err = w.Commit(ctx); err != nil {
			failedCommit++
		} else {
			queued++
			if got := readBody(t, s, id); !bytes.Equal(got, body) {
				t.Errorf("message %s: body of %d bytes; want %d", id, len(got), size)
			}
		}
		if err != nil && !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("size %d: %v; want an error that is ENOSPC", size, err)
		}
		if err != nil {
			t.Logf("size %d: %v", size, err)
		}
		// Nothing half-queued: exactly one file per listed message.
		if files := queueFiles(t, dir); len(files) != s.Len() {
			t.Fatalf("size %d: queue/ holds %v for %d queued messages", size, files, s.Len())
		}
	}
	t.Logf("queued %d, write failed %d, commit failed %d", queued, failedWrite, failedCommit)
	if queued == 0 || failedWrite+failedCommit == 0 {
		t.Fatalf("queued %d, failed %d; want some of each", queued, failedWrite+failedCommit)
	}

	// Fill the disk to the last page: a tiny message is created (tmpfs
	// needs no page for an empty file) but cannot be written at Commit,
	// and an update's envelope cannot be written either.
	var fillers []string
	for i := 0; ; i++ {
		name := filepath.Join(mnt, fmt.Sprintf("filler%d", i))
		if err := os.WriteFile(name, bytes.Repeat([]byte("f"), os.Getpagesize()), 0o600); err != nil {
			os.Remove(name)
			break
		}
		fillers = append(fillers, name)
	}
	if len(fillers) == 0 {
		t.Fatal("could not write a single filler page")
	}
	n := s.Len()
	if w, err := s.Create(ctx, testEnvelope()); err != nil {
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("Create() on a full disk = %v; want ENOSPC or nil", err)
		}
	} else {
		w.Write([]byte("tiny\r\n"))
		if _, err := w.Commit(ctx); !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("Commit on a full disk = %v; want ENOSPC", err)
		}
	}
	list, _ := s.List()
	env := list[0]
	env.Attempts++
	if err := s.Update(ctx, env); !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), tmpSuffix) {
		t.Errorf("Update on a full disk = %v; want ENOSPC writing the envelope", err)
	}
	if got, _ := s.Envelope(env.ID); got.Attempts != env.Attempts-1 {
		t.Errorf("after the failed Update, Attempts = %d; want %d", got.Attempts, env.Attempts-1)
	}
	if files := queueFiles(t, dir); s.Len() != n || len(files) != n {
		t.Errorf("on a full disk: Len() = %d, queue/ holds %v; want %d messages, 1 file each", s.Len(), files, n)
	}

	// Space freed, mail flows again; and everything queued survives a restart.
	for _, name := range fillers {
		os.Remove(name)
	}
	if err := s.Update(ctx, env); err != nil {
		t.Errorf("Update with room = %v", err)
	}
	if err := s.Remove(list[len(list)-1].ID); err != nil {
		t.Fatal(err)
	}
	commit(t, s, []byte("small\r\n"), testEnvelope())
	n = s.Len()
	s.Close()
	if s = openSpool(t, dir, Options{}); s.Len() != n {
		t.Errorf("after reopening, Len() = %d; want %d", s.Len(), n)
	}
	if got, _ := s.Envelope(env.ID); got == nil || got.Attempts != env.Attempts {
		t.Errorf("after reopening, Envelope(%s) = %+v; want %d attempts", env.ID, got, env.Attempts)
	}
}
