package spool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkCommit measures queuing a 10 KB message (Create, Write in 1 KB
// pieces as an SMTP session delivers them, Commit) with fsync on, from 1, 10
// and 50 concurrent writers. ns/op is wall time per message over all
// writers; msgs/s is the spool's throughput.
//
//	go test -run '^$' -bench Commit -benchmem ./spool/
//
// The spool goes into a temporary directory under $RELAY_SPOOL_BENCH_DIR
// when that is set (to measure the disk relay will use), else under
// $TMPDIR.
func BenchmarkCommit(b *testing.B) {
	for _, writers := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchCommit(b, writers, false)
		})
	}
}

// BenchmarkCommitNoSync is BenchmarkCommit without fsyncs: the cost of
// the spool's own work, apart from the disk.
func BenchmarkCommitNoSync(b *testing.B) {
	for _, writers := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchCommit(b, writers, true)
		})
	}
}

// BenchmarkCommitRemove is BenchmarkCommit with every message removed
// right after its Commit, as when the upstream takes each message at once:
// the queue stays short, and files are created and deleted all the time,
// which is what a file system's inode allocator sees under load.
func BenchmarkCommitRemove(b *testing.B) {
	for _, writers := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchCommitRemove(b, writers)
		})
	}
}

// BenchmarkFsyncFloor is the disk's floor for comparison, run beside
// BenchmarkCommit: one file per message, created, written, fsynced and
// closed, with no rename and no directory fsync (about what a queue that
// trusts the file system's journal for directory entries pays).
func BenchmarkFsyncFloor(b *testing.B) {
	for _, writers := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			dir := benchDir(b)
			body := benchBody()
			var seq atomic.Int64
			b.SetBytes(int64(len(body)))
			runWriters(b, writers, func() error {
				f, err := os.OpenFile(filepath.Join(dir, strconv.FormatInt(seq.Add(1), 10)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				if _, err := f.Write(body); err != nil {
					return err
				}
				return f.Sync()
			})
		})
	}
}

// BenchmarkList measures List over a queue of 10,000 messages.
func BenchmarkList(b *testing.B) {
	s := openSpool(b, b.TempDir(), Options{NoSync: true})
	for range 10_000 {
		commit(b, s, []byte("x\r\n"), testEnvelope("a@example.com", "b@example.com"))
	}
	b.ReportAllocs()
	for b.Loop() {
		if list, _ := s.List(); len(list) != 10_000 {
			b.Fatalf("List() has %d messages", len(list))
		}
	}
}

// benchDir returns a new directory for one benchmark, removed afterwards.
func benchDir(b *testing.B) string {
	parent := os.Getenv("RELAY_SPOOL_BENCH_DIR")
	if parent == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "spool-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func benchBody() []byte {
	return bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!\r\n"), 160) // 10,240 bytes
}

// runWriters calls op b.N times in all from the given number of goroutines,
// and reports allocations and messages per second.
func runWriters(b *testing.B, writers int, op func() error) {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ReportAllocs()
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func benchCommit(b *testing.B, writers int, noSync bool) {
	s := openSpool(b, benchDir(b), Options{NoSync: noSync})
	body := benchBody()
	b.SetBytes(int64(len(body)))
	ctx := context.Background()
	runWriters(b, writers, func() error {
		env := &Envelope{Profile: "sink", From: "bench@example.com",
			Recipients: []Recipient{{Addr: "sink@example.com"}}}
		w, err := s.Create(ctx, env)
		if err != nil {
			return err
		}
		for p := body; len(p) > 0; p = p[min(len(p), 1024):] {
			w.Write(p[:min(len(p), 1024)])
		}
		_, err = w.Commit(ctx)
		return err
	})
	b.ReportMetric(float64(s.syncer.fsyncs)/float64(b.N), "dirfsyncs/msg")
}

func benchCommitRemove(b *testing.B, writers int) {
	s := openSpool(b, benchDir(b), Options{})
	body := benchBody()
	b.SetBytes(int64(len(body)))
	ctx := context.Background()
	runWriters(b, writers, func() error {
		env := &Envelope{Profile: "sink", From: "bench@example.com",
			Recipients: []Recipient{{Addr: "sink@example.com"}}}
		w, err := s.Create(ctx, env)
		if err != nil {
			return err
		}
		for p := body; len(p) > 0; p = p[min(len(p), 1024):] {
			w.Write(p[:min(len(p), 1024)])
		}
		id, err := w.Commit(ctx)
		if err != nil {
			return err
		}
		return s.Remove(id)
	})
}
