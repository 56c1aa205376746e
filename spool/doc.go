// Package spool is relay's on-disk message queue: a message accepted for
// delivery = "queue" is streamed into a file, its envelope is written beside
// it, and both are fsynced and in place before the SMTP server may answer
// 250. From then on the message survives crashes and restarts until it is
// removed.
//
// # On-disk layout
//
// Everything lives under the directory given to Open (for relay,
// data_dir/spool). Directories are created with mode 0700 and files with
// mode 0600 on the first Open.
//
//	spool/
//	  lock                 held with flock(2) by the process that has the spool open
//	  queue/               every queued message, two files each:
//	    ID.eml             the message as received (RFC 5322, CRLF line endings);
//	                       written first, under its final name
//	    ID.json            its envelope; renamed into place last: the commit point
//	    ID.N.tmp           an envelope being written (Commit or Update)
//	  quarantine/          envelopes Open could not read, moved here with their
//	                       bodies for an operator to inspect; relay never deletes them
//
// A message is queued exactly when ID.json exists. An ID.eml without an
// ID.json is a message still being received, or one whose sender was cut
// off by a crash; it was never acknowledged, and Open deletes it together
// with any *.tmp file.
//
// ID is 19 characters from [0-9a-v]: 11 encode the arrival time in
// microseconds since 1970 (base 32, so IDs sort by arrival) and 8 are random
// (40 bits), which keeps IDs unique across restarts even if the clock steps
// back, for example 1j12l9p3krhqvsmrr5i. IDs are safe as file names; anything
// else given as an ID is refused with ErrBadID.
//
// The envelope is JSON, indented, so an operator can read it with any pager
// or jq:
//
//	{
//	  "version": 1,
//	  "id": "1j12l9p3krhqvsmrr5i",
//	  "profile": "office365",
//	  "from": "alarms@plant.example.com",
//	  "user": "scada",
//	  "recipients": [
//	    {"addr": "ops@example.com", "state": "pending", "reply": "451 4.7.0 try later"}
//	  ],
//	  "arrived": "2025-11-25T07:59:12.123456Z",
//	  "next_attempt": "2025-11-25T08:04:12Z",
//	  "attempts": 1,
//	  "last_error": "451 4.7.0 try later",
//	  "size": 10240
//	}
//
// "from" is "" for the null sender, "bounce" is true for a delivery status
// notification, and a recipient's "state" is "pending", "delivered" or
// "failed". A zero "next_attempt" is left out and means "now". Open refuses
// to start on an envelope whose "version" it does not know, rather than
// skip or quarantine mail written by a newer relay.
//
// # Durability
//
// Commit makes a message durable in this order: write and fsync ID.eml;
// write and fsync ID.N.tmp; rename it to ID.json; fsync queue/. A crash at
// any instant leaves either a complete message (both files) or files that
// Open sweeps. Directory fsyncs of concurrent Commits and Updates are grouped:
// one fsync of queue/ covers every rename that happened before it started,
// so N sessions committing at once cost 2N file fsyncs but far fewer than N
// directory fsyncs. Update replaces ID.json the same way. Remove deletes
// ID.json, then ID.eml, without waiting for a directory fsync: after a crash
// a message removed just before may come back and be delivered again (at
// least once, never lost).
//
// # Using the spool
//
// Receiving: Create, then Write the DATA as it arrives, then Commit with the
// envelope and answer 250 only if Commit returned nil; on any error, or when
// the client goes away or the message grows too big, Abort (defer w.Abort()
// is safe: it does nothing after Commit). Errors keep their cause, so
// errors.Is(err, syscall.ENOSPC) tells a full disk; either way the SMTP
// answer is 451 4.3.0 and nothing is queued.
//
// Delivering: List (or the ID Commit returned) says what is queued; Claim a
// message before delivering it so that no second worker takes it too,
// Open its body, then Update the envelope (recipient states, attempts, next
// attempt, last error) or Remove it, and Release the claim. Claims live in
// memory only: a delivery cut off by a crash is simply made again after
// the restart. Update and Remove of a message deleted meanwhile (relay queue
// delete) fail with ErrNotFound.
//
// One process at a time: Open takes an exclusive lock and fails with
// ErrLocked when another process holds it, so tools that inspect the queue
// go through the running server instead. The spool keeps every envelope in
// memory (a few hundred bytes per message), so List, Envelope, Len and
// Oldest read no files.
package spool
