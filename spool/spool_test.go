package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// openSpool opens the spool in dir and closes it when the test ends.
func openSpool(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testEnvelope(rcpts ...string) *Envelope {
	if len(rcpts) == 0 {
		rcpts = []string{"ops@example.com"}
	}
	env := &Envelope{Profile: "office365", From: "alarms@plant.example.com", User: "scada"}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, Recipient{Addr: r})
	}
	return env
}

// commit queues body with env and returns its ID.
func commit(t testing.TB, s *Spool, body []byte, env *Envelope) string {
	t.Helper()
	ctx := context.Background()
	w, err := s.Create(ctx, env)
	if err != nil {
		t.Fatalf("Create() = %v", err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	id, err := w.Commit(ctx)
	if err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	return id
}

func readBody(t testing.TB, s *Spool, id string) []byte {
	t.Helper()
	r, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open(%s) = %v", id, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading body %s: %v", id, err)
	}
	return b
}

// queueFiles lists the names in dir/queue.
// queueFiles lists queue/ without the pool of recycled files (recycle.go).
func queueFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, queueName))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), freePrefix) { // the recycled files' pool
			names = append(names, e.Name())
		}
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 11, 25, 7, 59, 12, 123456789, time.FixedZone("CET", 3600))
	s := openSpool(t, dir, Options{Now: func() time.Time { return now }})
	ctx := context.Background()

	body := []byte("Subject: alarm\r\n\r\nTank 3 high level\r\n")
	env := testEnvelope("ops@example.com", "boss@example.com")
	id := commit(t, s, body, env)
	if !ValidID(id) || env.ID != id {
		t.Fatalf("Commit() = %q, env.ID = %q; want a valid ID in both", id, env.ID)
	}
	if env.Size != int64(len(body)) || !env.Arrived.Equal(now) {
		t.Errorf("after Commit: Size %d, Arrived %v; want %d, %v", env.Size, env.Arrived, len(body), now)
	}
	if got := readBody(t, s, id); !bytes.Equal(got, body) {
		t.Errorf("body = %q; want %q", got, body)
	}
	got, err := s.Envelope(id)
	if err != nil {
		t.Fatalf("Envelope(%s) = %v", id, err)
	}
	if !reflect.DeepEqual(got, env) {
		t.Errorf("Envelope(%s) = %+v; want %+v", id, got, env)
	}
	if s.Len() != 1 || !s.Oldest().Equal(now) {
		t.Errorf("Len, Oldest = %d, %v; want 1, %v", s.Len(), s.Oldest(), now)
	}

	// One file: the envelope line, a header field of compact JSON with a
	// version, then the message as received.
	if files := queueFiles(t, dir); !slices.Equal(files, []string{id + msgSuffix}) {
		t.Errorf("queue/ holds %v; want only %s", files, id+msgSuffix)
	}
	raw, err := os.ReadFile(filepath.Join(dir, queueName, id+msgSuffix))
	if err != nil {
		t.Fatal(err)
	}
	line, msg, ok := bytes.Cut(raw, []byte("\r\n"))
	if !ok || !bytes.Equal(msg, body) {
		t.Errorf("after the first line the file holds %q; want the message %q", msg, body)
	}
	for _, want := range []string{"X-Relay-Envelope: {", `"version":3`, `"id":"` + id + `"`, `"profile":"office365"`,
		`"state":"pending"`, `"addr":"boss@example.com"`, `"arrived":"2025-11-25T06:59:12.123456789Z"`, fmt.Sprintf(`"size":%d `, len(body))} {
		if !bytes.Contains(line, []byte(want)) {
			t.Errorf("envelope line lacks %s:\n%s", want, line)
		}
	}

	// The reader Open returns seeks and reads at offsets within the
	// message, never into the envelope line.
	r, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		t.Fatalf("Open returned a %T; want an io.ReadSeeker", r)
	}
	io.Copy(io.Discard, rs)
	if pos, err := rs.Seek(0, io.SeekStart); pos != 0 || err != nil {
		t.Fatalf("Seek(0, SeekStart) = %d, %v", pos, err)
	}
	if again, _ := io.ReadAll(rs); !bytes.Equal(again, body) {
		t.Errorf("after Seek, read %q; want %q", again, body)
	}
	if end, _ := rs.Seek(0, io.SeekEnd); end != int64(len(body)) {
		t.Errorf("Seek(0, SeekEnd) = %d; want %d", end, len(body))
	}
	p := make([]byte, 7)
	if n, err := r.(io.ReaderAt).ReadAt(p, 0); n != 7 || err != nil || string(p) != "Subject" {
		t.Errorf("ReadAt(p, 0) = %d, %v, %q; want 7, nil, \"Subject\"", n, err, p)
	}
	r.Close()

	// Update: one recipient delivered, one deferred.
	got.Attempts = 1
	got.NextAttempt = now.Add(5 * time.Minute)
	got.LastError = "451 4.7.0 try again later"
	got.Recipients[0].State = Delivered
	got.Recipients[0].Reply = Reply{Code: 250, Enhanced: "2.0.0", Text: "2.0.0 OK"}
	got.Recipients[1].Reply = Reply{Code: 451, Enhanced: "4.7.0", Text: got.LastError}
	got.Size = 1 // ignored: the message's size is a fact
	if err := s.Update(ctx, got); err != nil {
		t.Fatalf("Update() = %v", err)
	}
	got.Size = env.Size
	got.NextAttempt = got.NextAttempt.UTC()
	updated, _ := s.Envelope(id)
	if !reflect.DeepEqual(updated, got) {
		t.Errorf("after Update, Envelope = %+v; want %+v", updated, got)
	}
	// The update is ID.json, indented JSON; the message file is unchanged.
	raw2, err := os.ReadFile(filepath.Join(dir, queueName, id+envSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version": 3`, `"attempts": 1`, `"state": "delivered"`, `"addr": "boss@example.com"`, `"code": 451`, `"enhanced": "4.7.0"`, `"text": "451 4.7.0 try again later"`, fmt.Sprintf(`"size": %d`, len(body))} {
		if !strings.Contains(string(raw2), want) {
			t.Errorf("envelope file lacks %s:\n%s", want, raw2)
		}
	}
	if raw3, _ := os.ReadFile(filepath.Join(dir, queueName, id+msgSuffix)); !bytes.Equal(raw3, raw) {
		t.Errorf("Update changed %s", id+msgSuffix)
	}

	// A second message, a bounce to the null sender, then a restart: both
	// come back as they were.
	now = now.Add(time.Second)
	dsn := testEnvelope("alarms@plant.example.com")
	dsn.From, dsn.User, dsn.Bounce = "", "", true
	id2 := commit(t, s, []byte("second\r\n"), dsn)
	if id2 <= id {
		t.Errorf("second ID %q does not sort after %q", id2, id)
	}
	before, _ := s.List()
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, err := s.List(); err != nil {
		t.Fatalf("List() after Close = %v", err)
	}
	if _, err := s.Create(ctx, testEnvelope()); !errors.Is(err, ErrClosed) {
		t.Errorf("Create() after Close = %v; want ErrClosed", err)
	}
	s = openSpool(t, dir, Options{})
	after, _ := s.List()
	if !reflect.DeepEqual(after, before) {
		t.Errorf("after reopening, List() = %+v; want %+v", after, before)
	}
	if len(after) != 2 || after[0].ID != id || after[1].ID != id2 {
		t.Fatalf("List() = %v; want [%s %s], oldest first", after, id, id2)
	}
	if after[1].From != "" || !after[1].Bounce {
		t.Errorf("the bounce came back as %+v", after[1])
	}
	if got := readBody(t, s, id); !bytes.Equal(got, body) {
		t.Errorf("body after reopening = %q; want %q", got, body)
	}
	if got, _ := s.Envelope(id); !reflect.DeepEqual(got, updated) {
		t.Errorf("after reopening, the updated envelope is %+v; want %+v", got, updated)
	}

	// Remove: gone from memory and disk; a late Update does not bring it back.
	if err := s.Remove(id); err != nil {
		t.Fatalf("Remove(%s) = %v", id, err)
	}
	if _, err := s.Envelope(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Envelope after Remove = %v; want ErrNotFound", err)
	}
	if _, err := s.Open(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Remove = %v; want ErrNotFound", err)
	}
	if err := s.Update(ctx, got); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update after Remove = %v; want ErrNotFound", err)
	}
	if err := s.Remove(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v; want ErrNotFound", err)
	}
	if err := s.Remove(id2); err != nil {
		t.Fatalf("Remove(%s) = %v", id2, err)
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Errorf("queue/ after removing everything holds %v", files)
	}
	if s.Len() != 0 || !s.Oldest().IsZero() {
		t.Errorf("Len, Oldest = %d, %v; want 0, zero", s.Len(), s.Oldest())
	}
}

func TestCreateRejectsBadEnvelope(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{NoSync: true})
	for _, env := range []*Envelope{
		{Profile: "p"},
		{Recipients: []Recipient{{Addr: "a@b"}}},
		{Profile: "p", Recipients: []Recipient{{Addr: ""}}},
		{Profile: "p", Recipients: []Recipient{{Addr: "a@b", State: 7}}},
	} {
		if w, err := s.Create(context.Background(), env); err == nil {
			t.Errorf("Create(%+v) = %s, nil; want an error", env, w.ID())
			w.Abort()
		}
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Errorf("queue/ after refused envelopes holds %v", files)
	}
}

func TestConcurrentCommits(t *testing.T) {
	const writers, each = 50, 20
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	var (
		mu    sync.Mutex
		want  = make(map[string][]byte)
		wg    sync.WaitGroup
		errCh = make(chan error, writers)
	)
	for g := range writers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range each {
				body := bytes.Repeat(fmt.Appendf(nil, "writer %d message %d\r\n", g, i), 1+(g*each+i)%300)
				env := testEnvelope(fmt.Sprintf("rcpt%d@example.com", g))
				w, err := s.Create(ctx, env)
				if err != nil {
					errCh <- err
					return
				}
				// Stream in small pieces, as an SMTP session does.
				for b := body; len(b) > 0; b = b[min(len(b), 1000):] {
					if _, err := w.Write(b[:min(len(b), 1000)]); err != nil {
						errCh <- err
						return
					}
				}
				id, err := w.Commit(ctx)
				if err != nil {
					errCh <- err
					return
				}
				mu.Lock()
				want[id] = body
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Fatal(err)
	}

	check := func(s *Spool) {
		t.Helper()
		list, _ := s.List()
		if len(list) != writers*each || len(want) != writers*each {
			t.Fatalf("List() has %d messages, %d distinct IDs committed; want %d", len(list), len(want), writers*each)
		}
		if !slices.IsSortedFunc(list, func(a, b *Envelope) int { return a.Arrived.Compare(b.Arrived) }) {
			t.Error("List() is not sorted by arrival")
		}
		for _, env := range list {
			if got := readBody(t, s, env.ID); !bytes.Equal(got, want[env.ID]) || env.Size != int64(len(got)) {
				t.Fatalf("message %s: %d bytes, envelope says %d; want %d intact bytes", env.ID, len(got), env.Size, len(want[env.ID]))
			}
		}
	}
	check(s)
	s.Close()
	check(openSpool(t, dir, Options{}))
}

// TestOpenSweeps plants what a crash leaves behind, and damage, and checks
// that Open deletes what was never acknowledged, quarantines what it cannot
// read, and keeps the rest.
func TestOpenSweeps(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	ctx := context.Background()
	good1 := commit(t, s, []byte("good one\r\n"), testEnvelope())
	truncatedLine := commit(t, s, []byte("truncated envelope line\r\n"), testEnvelope())
	noLine := commit(t, s, []byte("envelope line lost\r\n"), testEnvelope())
	wrongSize := commit(t, s, []byte("message cut short\r\n"), testEnvelope())
	env := testEnvelope()
	truncatedJSON := commit(t, s, []byte("truncated update\r\n"), env)
	env.Attempts = 1
	if err := s.Update(ctx, env); err != nil {
		t.Fatal(err)
	}
	env = testEnvelope()
	noMessage := commit(t, s, []byte("message lost\r\n"), env)
	env.Attempts = 1
	if err := s.Update(ctx, env); err != nil {
		t.Fatal(err)
	}
	env = testEnvelope()
	updated := commit(t, s, []byte("updated\r\n"), env)
	env.Attempts, env.LastError = 2, "451 try later"
	if err := s.Update(ctx, env); err != nil {
		t.Fatal(err)
	}
	good2 := commit(t, s, []byte("good two\r\n"), testEnvelope())
	s.Close()

	q := filepath.Join(dir, queueName)
	var gen idGen
	orphan := gen.next(time.Now())
	tmp := gen.next(time.Now())
	plant := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(q, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(q, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	raw := read(truncatedLine + msgSuffix)
	plant(truncatedLine+msgSuffix, raw[:40]+"\r\n"+raw[strings.Index(raw, "\r\n")+2:])
	raw = read(noLine + msgSuffix)
	plant(noLine+msgSuffix, raw[strings.Index(raw, "\r\n")+2:])
	raw = read(wrongSize + msgSuffix)
	plant(wrongSize+msgSuffix, raw[:len(raw)-3])
	raw = read(truncatedJSON + envSuffix)
	plant(truncatedJSON+envSuffix, raw[:len(raw)/2])
	os.Remove(filepath.Join(q, noMessage+msgSuffix))
	plant(orphan+".eml", "a body of the two-file format of version 1, which no relay released")
	plant(tmp+tmpSuffix, "X-Relay-Envelope: {\"version\":2,\"id\":\""+tmp+"\"") // a message cut off
	plant(tmp+".7"+tmpSuffix, `{"version": 2, "id": "`)
	plant(good1+".8"+tmpSuffix, `{"version": 2, "id": "`) // an Update cut short
	plant("NOTES.txt", "an operator's file")

	var logs bytes.Buffer
	s = openSpool(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	list, _ := s.List()
	var ids []string
	for _, env := range list {
		ids = append(ids, env.ID)
	}
	if want := []string{good1, updated, good2}; !slices.Equal(ids, want) {
		t.Errorf("after Open, List() = %v; want %v", ids, want)
	}
	if env, _ := s.Envelope(updated); env == nil || env.Attempts != 2 || env.LastError != "451 try later" {
		t.Errorf("Envelope(%s) = %+v; want the one from %s", updated, env, updated+envSuffix)
	}
	files := queueFiles(t, dir)
	wantFiles := []string{good1 + msgSuffix, updated + msgSuffix, updated + envSuffix, good2 + msgSuffix, "NOTES.txt", orphan + ".eml"}
	slices.Sort(files)
	slices.Sort(wantFiles)
	if !slices.Equal(files, wantFiles) {
		t.Errorf("queue/ holds %v; want %v", files, wantFiles)
	}
	quarantined, _ := os.ReadDir(filepath.Join(dir, quarantineName))
	var qnames []string
	for _, e := range quarantined {
		qnames = append(qnames, e.Name())
	}
	wantQ := []string{truncatedLine + msgSuffix, noLine + msgSuffix, wrongSize + msgSuffix,
		truncatedJSON + msgSuffix, truncatedJSON + envSuffix, noMessage + envSuffix}
	slices.Sort(wantQ)
	if !slices.Equal(qnames, wantQ) {
		t.Errorf("quarantine/ holds %v; want %v", qnames, wantQ)
	}
	for _, id := range []string{truncatedLine, noLine, wrongSize, truncatedJSON, noMessage} {
		if !strings.Contains(logs.String(), "quarantined") || !strings.Contains(logs.String(), id) {
			t.Errorf("log does not report quarantining %s:\n%s", id, logs.String())
		}
	}
	// One convention: the component as an attribute, never a prefix.
	for _, want := range []string{`msg="removed temp file left by a crash" component=spool`, `msg="message quarantined, not delivered" component=spool`, `msg="unknown entry in queue directory left alone" component=spool file=NOTES.txt`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	t.Logf("log:\n%s", logs.String())
	if got := readBody(t, s, good2); string(got) != "good two\r\n" {
		t.Errorf("body of %s = %q", good2, got)
	}

	// Quarantined files are never overwritten, even by a second one of the
	// same name.
	s.Close()
	plant(noMessage+envSuffix, "garbage")
	s = openSpool(t, dir, Options{})
	if _, err := os.Stat(filepath.Join(dir, quarantineName, noMessage+envSuffix+".1")); err != nil {
		t.Errorf("second quarantined envelope: %v", err)
	}
}

// TestOpenRefusesUnknownVersion: mail written by a newer relay stops Open,
// whether the version is in the envelope line or in ID.json, and stays
// where it is; so does version 1, which no relay released.
func TestOpenRefusesUnknownVersion(t *testing.T) {
	for _, version := range []string{"4", "1"} {
		for _, file := range []string{msgSuffix, envSuffix} {
			t.Run("version"+version+file, func(t *testing.T) {
				dir := t.TempDir()
				s := openSpool(t, dir, Options{NoSync: true})
				env := testEnvelope()
				id := commit(t, s, []byte("from the future\r\n"), env)
				env.Attempts = 1
				if err := s.Update(context.Background(), env); err != nil {
					t.Fatal(err)
				}
				s.Close()
				name := filepath.Join(dir, queueName, id+file)
				raw, _ := os.ReadFile(name)
				raw = bytes.Replace(raw, []byte(`"version":3`), []byte(`"version":`+version), 1)
				raw = bytes.Replace(raw, []byte(`"version": 3`), []byte(`"version": `+version), 1)
				os.WriteFile(name, raw, 0o600)

				if s, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "version "+version) {
					t.Errorf("Open with a version %s file = %v; want an error naming the version", version, err)
					if err == nil {
						s.Close()
					}
				}
				if _, err := os.Stat(name); err != nil {
					t.Errorf("the version %s file was moved: %v", version, err)
				}
			})
		}
	}
}

// writeVersion2 queues a message as a relay of format version 2 left it
// after one attempt: an envelope line of version 2 in ID.mail, and an
// ID.json of version 2 whose replies are strings. It returns the envelope
// Open loads, replies converted.
func writeVersion2(t testing.TB, dir string, body []byte) *Envelope {
	t.Helper()
	s := openSpool(t, dir, Options{NoSync: true})
	env := testEnvelope("ops@example.com", "boss@example.com", "gone@example.com", "late@example.com")
	id := commit(t, s, body, env)
	s.Close()
	name := filepath.Join(dir, queueName, id+msgSuffix)
	raw, _ := os.ReadFile(name)
	if err := os.WriteFile(name, bytes.Replace(raw, []byte(`"version":3`), []byte(`"version":2`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	js := fmt.Sprintf(`{
  "version": 2,
  "id": %q,
  "profile": "office365",
  "from": "alarms@plant.example.com",
  "user": "scada",
  "recipients": [
    {"addr": "ops@example.com", "state": "delivered", "reply": "2.0.0 Ok: queued as 4dXyz"},
    {"addr": "boss@example.com", "state": "pending", "reply": "upstream mx.example.com:587: RCPT TO: 451 4.7.0 try later"},
    {"addr": "gone@example.com", "state": "pending", "reply": "upstream mx.example.com:465: RCPT TO: 550 no such user"},
    {"addr": "late@example.com", "state": "pending", "reply": "gave up after 9 attempts over 120h0m0s: upstream mx.example.com:587: connect: connection refused"}
  ],
  "arrived": %q,
  "next_attempt": "2025-11-25T08:04:12Z",
  "attempts": 1,
  "last_error": "upstream mx.example.com:587: RCPT TO: 451 4.7.0 try later",
  "size": %d
}
`, id, env.Arrived.UTC().Format(time.RFC3339Nano), len(body))
	if err := os.WriteFile(filepath.Join(dir, queueName, id+envSuffix), []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Arrived = env.Arrived.UTC()
	env.NextAttempt = time.Date(2025, 11, 25, 8, 4, 12, 0, time.UTC)
	env.Attempts, env.LastError = 1, "upstream mx.example.com:587: RCPT TO: 451 4.7.0 try later"
	env.Recipients = []Recipient{
		// A success: no code in the text, none taken.
		{Addr: "ops@example.com", State: Delivered, Reply: Reply{Text: "2.0.0 Ok: queued as 4dXyz"}},
		{Addr: "boss@example.com", State: Pending, Reply: Reply{Code: 451, Enhanced: "4.7.0", Text: "upstream mx.example.com:587: RCPT TO: 451 4.7.0 try later"}},
		// Without an enhanced code, and with a port that looks like a code.
		{Addr: "gone@example.com", State: Pending, Reply: Reply{Text: "upstream mx.example.com:465: RCPT TO: 550 no such user"}},
		{Addr: "late@example.com", State: Pending, Reply: Reply{Enhanced: "4.4.7", Text: "gave up after 9 attempts over 120h0m0s: upstream mx.example.com:587: connect: connection refused"}},
	}
	return env
}

// TestVersion2Format: mail queued by a relay of format version 2 loads,
// with each reply string converted to its code, enhanced code and text;
// an Update writes version 3, and the message reads the same after a
// restart.
func TestVersion2Format(t *testing.T) {
	dir := t.TempDir()
	body := []byte("Received: from plc\r\nSubject: old\r\n\r\nqueued before the upgrade\r\n")
	want := writeVersion2(t, dir, body)
	s := openSpool(t, dir, Options{})
	id := want.ID
	if got, err := s.Envelope(id); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Envelope(%s) = %+v, %v; want %+v", id, got, err, want)
	}
	if got := readBody(t, s, id); !bytes.Equal(got, body) {
		t.Errorf("body = %q; want %q", got, body)
	}
	want.Attempts = 2
	if err := s.Update(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(dir, queueName, id+envSuffix))
	if !strings.Contains(string(js), `"version": 3`) || !strings.Contains(string(js), `"enhanced": "4.4.7"`) {
		t.Errorf("updated %s:\n%s", id+envSuffix, js)
	}
	s.Close()
	s = openSpool(t, dir, Options{})
	if got, _ := s.Envelope(id); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening, Envelope(%s) = %+v; want %+v", id, got, want)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Errorf("after Remove(%s), queue/ holds %v", id, files)
	}
}

// TestRecipientJSON: the JSON API form of a recipient keeps the reply text
// under "Reply", with the codes beside it, and reads back the same.
func TestRecipientJSON(t *testing.T) {
	r := Recipient{Addr: "gone@example.com", State: Failed, Reply: Reply{Code: 550, Enhanced: "5.1.1", Text: "upstream mx:25: RCPT TO: 550 5.1.1 User unknown"}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Addr":"gone@example.com","State":"failed","Reply":"upstream mx:25: RCPT TO: 550 5.1.1 User unknown","Code":550,"EnhancedCode":"5.1.1"}`; string(b) != want {
		t.Errorf("json.Marshal = %s; want %s", b, want)
	}
	var back Recipient
	if err := json.Unmarshal(b, &back); err != nil || back != r {
		t.Errorf("json.Unmarshal = %+v, %v; want %+v", back, err, r)
	}
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	ctx := context.Background()
	w, err := s.Create(ctx, testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(w.ID()) {
		t.Errorf("Writer.ID() = %q", w.ID())
	}
	w.Write(bytes.Repeat([]byte("x"), 100_000))
	if w.Size() != 100_000 {
		t.Errorf("Size() = %d; want 100000", w.Size())
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort() = %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("second Abort() = %v", err)
	}
	if _, err := w.Write([]byte("y")); err == nil {
		t.Error("Write after Abort succeeded")
	}
	if _, err := w.Commit(ctx); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Errorf("queue/ after Abort holds %v", files)
	}

	// A committed Writer's Abort does nothing.
	id := commit(t, s, []byte("kept\r\n"), testEnvelope())
	if s.Len() != 1 {
		t.Fatalf("Len() = %d; want 1", s.Len())
	}
	if _, err := s.Envelope(id); err != nil {
		t.Error(err)
	}
}

// TestCommitErrors makes each step of Commit fail for real and checks that
// nothing is queued and nothing is left in queue/.
func TestCommitErrors(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, s *Spool, w *Writer)
		ctx    func() context.Context
	}{
		{name: "write", break_: func(t *testing.T, s *Spool, w *Writer) {
			w.f.Close() // the next flush fails: "file already closed"
		}},
		{name: "rename", break_: func(t *testing.T, s *Spool, w *Writer) {
			// A directory where the message goes makes the rename fail.
			if err := os.Mkdir(s.msgPath(w.ID()), 0o700); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := os.Remove(s.msgPath(w.ID())); err != nil {
					t.Error(err)
				}
			})
		}},
		{name: "write size", break_: func(t *testing.T, s *Spool, w *Writer) {
			// A message larger than the buffer: the envelope line is on
			// disk, and its size is written over it at Commit.
			w.Write(bytes.Repeat([]byte("x"), 2*bufSize))
			w.f.Close()
		}},
		{name: "canceled", ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, dir, Options{})
			w, err := s.Create(context.Background(), testEnvelope())
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("doomed\r\n"))
			ctx := context.Background()
			if tt.break_ != nil {
				tt.break_(t, s, w)
			}
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			if id, err := w.Commit(ctx); err == nil {
				t.Fatalf("Commit() = %s, nil; want an error", id)
			} else {
				t.Logf("Commit() = %v", err)
			}
			if list, _ := s.List(); len(list) != 0 {
				t.Errorf("List() after a failed Commit = %v", list)
			}
			files := slices.DeleteFunc(queueFiles(t, dir), func(n string) bool { return n == w.ID()+msgSuffix && tt.name == "rename" })
			if len(files) != 0 {
				t.Errorf("queue/ after a failed Commit holds %v", files)
			}
		})
	}
}

func TestBadIDs(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{NoSync: true})
	id := commit(t, s, []byte("x\r\n"), testEnvelope())
	ctx := context.Background()
	bad := []string{"", "..", "../../etc/passwd", id + "/..", "../" + id[3:], strings.ToUpper(id),
		id + "x", id[1:], id[:18] + "w", id[:18] + "/", id[:18] + "\x00", "/" + id[1:]}
	for _, b := range bad {
		if ValidID(b) {
			t.Errorf("ValidID(%q) = true", b)
		}
		if _, err := s.Open(b); !errors.Is(err, ErrBadID) {
			t.Errorf("Open(%q) = %v; want ErrBadID", b, err)
		}
		if _, err := s.Envelope(b); !errors.Is(err, ErrBadID) {
			t.Errorf("Envelope(%q) = %v; want ErrBadID", b, err)
		}
		if err := s.Remove(b); !errors.Is(err, ErrBadID) {
			t.Errorf("Remove(%q) = %v; want ErrBadID", b, err)
		}
		env := testEnvelope()
		env.ID = b
		if err := s.Update(ctx, env); !errors.Is(err, ErrBadID) {
			t.Errorf("Update(ID %q) = %v; want ErrBadID", b, err)
		}
	}
	unknown := strings.Repeat("0", IDLen)
	if _, err := s.Open(unknown); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(%q) = %v; want ErrNotFound", unknown, err)
	}
	if s.Len() != 1 {
		t.Errorf("Len() = %d; want 1", s.Len())
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := openSpool(t, dir, Options{})
	env := testEnvelope()
	id := commit(t, s, []byte("secret\r\n"), env)
	env.Attempts = 1
	if err := s.Update(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{
		dir:                                       fs.ModeDir | 0o700,
		filepath.Join(dir, queueName):             fs.ModeDir | 0o700,
		filepath.Join(dir, quarantineName):        fs.ModeDir | 0o700,
		filepath.Join(dir, lockName):              0o600,
		filepath.Join(dir, queueName, id+".mail"): 0o600,
		filepath.Join(dir, queueName, id+".json"): 0o600,
	}
	for name, mode := range want {
		info, err := os.Stat(name)
		if err != nil {
			t.Error(err)
			continue
		}
		if info.Mode() != mode {
			t.Errorf("%s has mode %v; want %v", name, info.Mode(), mode)
		}
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	if s2, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v; want ErrLocked", err)
		if err == nil {
			s2.Close()
		}
	}
	s.Close()
	openSpool(t, dir, Options{})
}

func TestIDsSortAndDiffer(t *testing.T) {
	var g idGen
	base := time.Date(2025, 11, 25, 8, 0, 0, 0, time.UTC)
	prev := ""
	for i := range 10_000 {
		now := base
		if i%3 == 1 {
			now = base.Add(-time.Hour) // the clock steps back
		}
		id := g.next(now)
		if !ValidID(id) {
			t.Fatalf("next() = %q, not a valid ID", id)
		}
		if id <= prev {
			t.Fatalf("ID %q does not sort after %q", id, prev)
		}
		prev = id
	}
	// Two generators (two runs of relay) in the same microsecond differ.
	var a, b idGen
	if x, y := a.next(base), b.next(base); x == y || x[:idTimeLen] != y[:idTimeLen] {
		t.Errorf("IDs %q and %q: want the same time part and different random parts", x, y)
	}
}

func TestDirSyncerGroups(t *testing.T) {
	var (
		mu      sync.Mutex
		calls   int
		started = make(chan struct{}, 100)
		release = make(chan struct{})
	)
	d := newDirSyncer(func() error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		started <- struct{}{}
		<-release
		if n > 1 {
			return errors.New("disk trouble")
		}
		return nil
	})
	first := make(chan error)
	go func() { first <- d.Sync() }()
	<-started // the first fsync is in flight
	const waiters = 20
	errs := make(chan error, waiters)
	for range waiters {
		go func() { errs <- d.Sync() }()
	}
	// Let the waiters queue up behind the fsync in flight (those that are
	// late make a third fsync, which the checks below allow).
	time.Sleep(50 * time.Millisecond)
	release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first Sync() = %v", err)
	}
	select {
	case err := <-errs:
		t.Fatalf("a Sync() returned %v before an fsync that started after it", err)
	case <-started: // the second fsync, for all waiters
	}
	close(release)
	for range waiters {
		if err := <-errs; err == nil || err.Error() != "disk trouble" {
			t.Errorf("waiter's Sync() = %v; want the error of an fsync after the first", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls > 3 {
		t.Errorf("%d fsyncs for 1 + %d callers; want 2 (3 if some were late)", calls, waiters)
	}
}

// TestSizes commits messages around the Writer's buffer size, written in
// one piece, in small pieces and through ReadFrom, with envelope lines short
// and longer than the buffer, and reads each back after a restart.
func TestSizes(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{NoSync: true})
	ctx := context.Background()
	var many []string
	for i := range 600 {
		many = append(many, fmt.Sprintf("recipient-with-a-long-name-%04d@example.com", i))
	}
	envs := map[string]func() *Envelope{
		"short": func() *Envelope { return testEnvelope() },
		"long":  func() *Envelope { return testEnvelope(many...) }, // its line is longer than the buffer
	}
	want := make(map[string][]byte)
	for _, size := range []int{0, 1, bufSize - 300, bufSize - 1, bufSize, bufSize + 1, 3*bufSize + 17} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte('a' + i%26)
		}
		for envName, mk := range envs {
			for _, how := range []string{"whole", "pieces", "readfrom"} {
				env := mk()
				w, err := s.Create(ctx, env)
				if err != nil {
					t.Fatal(err)
				}
				var n int64
				switch how {
				case "whole":
					k, err := w.Write(body)
					n = int64(k)
					if err != nil {
						t.Fatal(err)
					}
				case "pieces":
					for p := body; len(p) > 0; p = p[min(len(p), 1000):] {
						k, err := w.Write(p[:min(len(p), 1000)])
						n += int64(k)
						if err != nil {
							t.Fatal(err)
						}
					}
				case "readfrom":
					n, err = io.Copy(w, iotest.HalfReader(bytes.NewReader(body)))
					if err != nil {
						t.Fatal(err)
					}
				}
				if n != int64(size) || w.Size() != int64(size) {
					t.Errorf("%d bytes %s, %s envelope: wrote %d, Size() = %d", size, how, envName, n, w.Size())
				}
				id, err := w.Commit(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if env.Size != int64(size) {
					t.Errorf("%d bytes %s, %s envelope: env.Size = %d", size, how, envName, env.Size)
				}
				want[id] = body
			}
		}
	}
	s.Close()
	s = openSpool(t, dir, Options{})
	if s.Len() != len(want) {
		t.Fatalf("after reopening, Len() = %d; want %d", s.Len(), len(want))
	}
	for id, body := range want {
		if got := readBody(t, s, id); !bytes.Equal(got, body) {
			t.Errorf("message %s: read %d bytes; want %d", id, len(got), len(body))
		}
		if env, _ := s.Envelope(id); env.Size != int64(len(body)) {
			t.Errorf("message %s: Size %d; want %d", id, env.Size, len(body))
		}
	}
}

// TestReadFromReadError: a read error in ReadFrom (the client's side)
// comes back as it is, and the Writer can still be aborted cleanly.
func TestReadFromReadError(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{NoSync: true})
	w, err := s.Create(context.Background(), testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	cut := errors.New("client went away")
	n, err := io.Copy(w, io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(cut)))
	if n != 7 || err != cut {
		t.Errorf("io.Copy = %d, %v; want 7, %v", n, err, cut)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Errorf("queue/ after Abort holds %v", files)
	}
}
