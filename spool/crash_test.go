package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashDirEnv tells the test binary, re-executed by TestCrash, to run
// TestCrashChild against the spool in this directory.
const crashDirEnv = "RELAY_SPOOL_CRASH_DIR"

// crashBody is the body of message id: its length and content follow from
// the ID, so the parent can check it without being told.
func crashBody(id string) []byte {
	h := fnv.New32a()
	h.Write([]byte(id))
	n := int(h.Sum32() % 60_000)
	line := []byte("message " + id + "\r\n")
	return bytes.Repeat(line, n/len(line)+1)[:n]
}

// TestCrashChild is the half of TestCrash that gets killed: it commits,
// updates and removes messages in a loop, and prints what it did each time
// the spool said it was done.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash in a child process")
	}
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	s, err := Open(dir, Options{})
	if err != nil {
		say("error %v", err)
		os.Exit(2)
	}
	say("ready")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ctx := context.Background()
			for i := 0; ; i++ {
				env := testEnvelope("a@example.com", "b@example.com")
				w, err := s.Create(ctx, env)
				if err != nil {
					say("error %v", err)
					os.Exit(2)
				}
				for b := crashBody(w.ID()); len(b) > 0; b = b[min(len(b), 4096):] {
					if _, err := w.Write(b[:min(len(b), 4096)]); err != nil {
						say("error %v", err)
						os.Exit(2)
					}
				}
				id, err := w.Commit(ctx)
				if err != nil {
					say("error %v", err)
					os.Exit(2)
				}
				say("committed %s", id)
				switch i % 4 {
				case 1:
					env.Attempts = 1
					env.Recipients[0].State = Delivered
					env.LastError = "451 4.7.0 try again later"
					say("updating %s", id) // from now on it may have an ID.json
					if err := s.Update(ctx, env); err != nil {
						say("error %v", err)
						os.Exit(2)
					}
					say("updated %s", id)
				case 2:
					say("removing %s", id) // from now on it may be gone
					if err := s.Remove(id); err != nil {
						say("error %v", err)
						os.Exit(2)
					}
					say("removed %s", id)
				}
			}
		})
	}
	wg.Wait()
}

// TestCrash kills a process that is committing messages with SIGKILL at a
// random moment, twenty times over, and checks after each kill that Open
// finds only complete messages, and every message whose Commit had returned.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills 20 processes")
	}
	dir := t.TempDir()
	var (
		committed = make(map[string]bool)
		updating  = make(map[string]bool)
		updated   = make(map[string]bool)
		removing  = make(map[string]bool)
		removed   = make(map[string]bool)
	)
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()

		// Kill the child at a random moment: mostly once it has opened the
		// spool, every fourth round perhaps while it sweeps.
		var said []string
		if round%4 != 3 {
			timeout := time.After(30 * time.Second)
		wait:
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("round %d: child ended before it was ready: %s", round, stderr.Bytes())
					}
					said = append(said, l)
					if l == "ready" {
						break wait
					}
				case <-timeout:
					cmd.Process.Kill()
					t.Fatalf("round %d: child not ready after 30s", round)
				}
			}
		}
		time.Sleep(time.Duration(rand.IntN(150_000)) * time.Microsecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		for l := range lines {
			said = append(said, l)
		}
		cmd.Wait()

		n := 0
		for _, l := range said {
			verb, id, _ := strings.Cut(l, " ")
			switch verb {
			case "ready":
			case "committed":
				committed[id] = true
				n++
			case "updating":
				updating[id] = true
			case "updated":
				updated[id] = true
			case "removing":
				removing[id] = true
			case "removed":
				removed[id] = true
			default:
				t.Fatalf("round %d: child said %q; stderr: %s", round, l, stderr.Bytes())
			}
		}

		s := openSpool(t, dir, Options{})
		list, _ := s.List()
		listed := make(map[string]bool)
		for _, env := range list {
			listed[env.ID] = true
			if got, want := readBody(t, s, env.ID), crashBody(env.ID); !bytes.Equal(got, want) {
				t.Errorf("round %d: message %s has a body of %d bytes that differs from the %d written", round, env.ID, len(got), len(want))
			}
			if updated[env.ID] && (env.Attempts != 1 || env.Recipients[0].State != Delivered) {
				t.Errorf("round %d: message %s lost its update: %+v", round, env.ID, env)
			}
		}
		for id := range committed {
			if !listed[id] && !removing[id] {
				t.Errorf("round %d: committed message %s is missing", round, id)
			}
		}
		for id := range removed {
			if listed[id] {
				t.Errorf("round %d: removed message %s is back", round, id)
			}
		}
		if q, _ := os.ReadDir(filepath.Join(dir, quarantineName)); len(q) > 0 {
			t.Errorf("round %d: %d files in quarantine", round, len(q))
		}
		// One file per message, and an ID.json beside the updated ones.
		var msgs, jsons int
		for _, name := range queueFiles(t, dir) {
			id, ext, _ := strings.Cut(name, ".")
			switch {
			case "."+ext == msgSuffix && listed[id]:
				msgs++
			case "."+ext == envSuffix && listed[id] && updating[id]:
				jsons++
			default:
				t.Errorf("round %d: queue/ holds %s", round, name)
			}
		}
		if msgs != len(list) {
			t.Errorf("round %d: queue/ holds %d message files for %d messages", round, msgs, len(list))
		}
		s.Close()
		t.Logf("round %d: killed after %d commits; %d queued, %d of them updated", round, n, len(list), jsons)
		if t.Failed() {
			break
		}
	}
	t.Logf("%d committed, %d updated, %d removed in all", len(committed), len(updated), len(removed))
}
