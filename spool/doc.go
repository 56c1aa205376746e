// Package spool is relay's on-disk message queue: a message accepted for
// delivery = "queue" is streamed into a file that starts with its envelope,
// and the file is fsynced and renamed into place before the SMTP server may
// answer 250. From then on the message survives crashes and restarts until
// it is removed.
//
// # On-disk layout
//
// Everything lives under the directory given to Open (for relay,
// data_dir/spool). Directories are created with mode 0700 and files with
// mode 0600 on the first Open.
//
//	spool/
//	  lock                 held with flock(2) by the process that has the spool open
//	  queue/               every queued message, one file each:
//	    ID.mail            the envelope line, then the message as received
//	                       (RFC 5322, CRLF line endings); renamed into place
//	                       from ID.tmp: the commit point
//	    ID.json            the envelope once delivery has updated it (attempts,
//	                       recipient states, next attempt, last error); wins
//	                       over the envelope line
//	    ID.tmp             a message being received
//	    ID.N.tmp           an envelope being written (Update)
//	    free-N.tmp         the file of a removed message, kept to hold a later
//	                       one (recycle.go): overwritten, cut to length and
//	                       fsynced before its rename to ID.mail; deleted by Open
//	  quarantine/          messages Open could not read, moved here for an
//	                       operator to inspect; relay never deletes them
//
// A message is queued exactly when ID.mail exists. Its first line is a
// header field carrying the envelope the message arrived with, as compact
// JSON on one line, so the file stays a readable RFC 5322 message (like the
// Return-Path a delivery agent prepends):
//
//	X-Relay-Envelope: {"version":3,"id":"1j12l9p3krhqvsmrr5i","profile":"office365",...,"size":10240      }
//	Received: from plc ([10.0.0.7])
//	...
//
// "size" is the size of the message after the line; Create leaves spaces for
// it and Commit writes it in. Open hands out the message without the line.
// Only deferrals and partial failures write ID.json; a message delivered at
// the first attempt never has one.
//
// ID is 19 characters from [0-9a-v]: 11 encode the arrival time in
// microseconds since 1970 (base 32, so IDs sort by arrival) and 8 are random
// (40 bits), which keeps IDs unique across restarts even if the clock steps
// back, for example 1j12l9p3krhqvsmrr5i. IDs are safe as file names; anything
// else given as an ID is refused with ErrBadID.
//
// ID.json is the same JSON, indented, so an operator can read it with any
// pager or jq:
//
//	{
//	  "version": 3,
//	  "id": "1j12l9p3krhqvsmrr5i",
//	  "profile": "office365",
//	  "from": "alarms@plant.example.com",
//	  "user": "scada",
//	  "recipients": [
//	    {"addr": "ops@example.com", "state": "pending",
//	     "reply": {"code": 451, "enhanced": "4.7.0", "text": "upstream smtp.office365.com:587: RCPT TO: 451 4.7.0 try later"}}
//	  ],
//	  "arrived": "2025-11-25T07:59:12.123456Z",
//	  "next_attempt": "2025-11-25T08:04:12Z",
//	  "attempts": 1,
//	  "last_error": "upstream smtp.office365.com:587: RCPT TO: 451 4.7.0 try later",
//	  "size": 10240
//	}
//
// "from" is "" for the null sender, "bounce" is true for a delivery status
// notification, and a recipient's "state" is "pending", "delivered" or
// "failed". "body" and "smtputf8" keep what the client declared at MAIL:
// BODY= ("7BIT" or "8BITMIME", RFC 6152) and the SMTPUTF8 parameter (true,
// RFC 6531); each is left out when the client gave none. A recipient's "reply" is the outcome of its last attempt: the
// upstream's reply code and enhanced status code (RFC 3463) when it
// answered, and the text listings and bounces show. A zero "next_attempt"
// is left out and means "now". Open refuses to start on a "version" it does
// not know, rather than skip or quarantine mail written by a newer relay.
//
// Fields are only ever added within a version when leaving them out keeps
// the old meaning ("body" and "smtputf8" were added to version 3 that way):
// a reader ignores fields it does not know, so an older relay of the same
// version reads a newer file, without them. A change that an older reader
// would get wrong takes a new version.
//
// Version 2 of the format differs only in "reply", a string: the text
// alone. Open reads it and takes the codes from the text (see Reply); an
// Update writes version 3. A message whose ID.mail has a line of version 2
// may thus have an ID.json of version 3.
//
// # Durability
//
// Commit makes a message durable in this order: write ID.tmp (the envelope
// line, then the message) and fsync it once; rename it to ID.mail; fsync
// queue/. A crash at any instant leaves either a complete message or a temp
// file that Open sweeps. Directory fsyncs of concurrent Commits and Updates
// are grouped: one fsync of queue/ covers every rename that happened before
// it started, so N sessions committing at once cost N file fsyncs but far
// fewer than N directory fsyncs. Update writes and fsyncs ID.N.tmp, renames
// it to ID.json and fsyncs queue/ the same way. Remove deletes ID.json (if
// any), then ID.mail, without waiting for a directory fsync: after a crash a
// message removed just before may come back and be delivered again, with its
// last envelope or the one it arrived with (at least once, never lost).
//
// Open checks every message: the envelope line must parse, belong to the
// file's ID and give the size the file has, and so must ID.json when there
// is one; a message that fails is quarantined, never deleted.
//
// # Using the spool
//
// Receiving: Create with the envelope (sender, recipients, profile: all
// known before DATA), then Write the DATA as it arrives (or io.Copy it: the
// Writer reads straight into its buffer), then Commit and answer 250 only
// if Commit returned nil; on any error, or when the client goes away or the
// message grows too big, Abort (defer w.Abort() is safe: it does nothing
// after Commit). Errors keep their cause, so errors.Is(err, syscall.ENOSPC)
// tells a full disk; either way the SMTP answer is 451 4.3.0 and nothing is
// queued.
//
// Delivering: List (or the ID Commit returned) says what is queued; Open a
// message (the message as received, without the envelope line; it can
// seek), then Update the envelope (recipient states, attempts, next
// attempt, last error) or Remove it. The spool is storage only: which
// message is being delivered, and when the next attempt is due, is the
// delivery queue's business (package queue); a delivery cut off by a crash
// is simply made again after the restart. Update and Remove of a message
// deleted meanwhile (relay queue delete) fail with ErrNotFound.
//
// One process at a time: Open takes an exclusive lock and fails with
// ErrLocked when another process holds it, so tools that inspect the queue
// go through the running server instead. The spool keeps every envelope in
// memory (a few hundred bytes per message), so List, Envelope, Len and
// Oldest read no files.
package spool
