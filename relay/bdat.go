package relay

// go-smtp runs the session's Data for BDAT (RFC 3030) in a goroutine of its
// own, fed through a pipe chunk by chunk, and keeps reading commands while
// a message is unfinished. RSET, EHLO and the connection's end close the
// pipe and then call Reset or Logout; STARTTLS calls Logout first and
// closes the pipe after; AUTH is handled meanwhile. Without care, Reset's
// RSET to the upstream went out in the middle of the upstream DATA that the
// BDAT goroutine was still writing, and the upstream could accept a
// message the client had abandoned.
//
// So Data holds session.dataMu while it runs, and Mail, Rcpt and Reset
// take it too: go-smtp refuses MAIL and RCPT while a BDAT message is open
// and closes the pipe before it calls Reset, so none of them waits for a
// Data that waits for them. An empty chunk ("BDAT 0") writes nothing into
// the pipe, so its Data may start only after RSET and a new MAIL: it then
// finds the pipe closed, fails, and never completes a message. Logout, which
// may come before the pipe is closed, cancels the session's context and
// leaves closing the upstream connection to logoutAfterData. AUTH inside a
// transaction is refused (RFC 4954 §4). Data reads nothing from go-smtp's
// Conn, whose fields the command loop writes: the EHLO name is taken in
// Mail and the connection's limits in newSession.
//
// What relay cannot mend: go-smtp's BDAT goroutine sends Data's result on
// Conn.dataResult after Data returns, and the next BDAT command replaces
// that channel without waiting (go test -race reports it), so after a BDAT
// message abandoned by RSET, a second BDAT message on the same connection
// may be answered with the first one's result.

// logoutAfterData closes the upstream connection once Data has returned.
// Data returns soon: the session's context is cancelled, which ends any
// upstream I/O, and go-smtp closes the pipe right after Logout.
func (s *session) logoutAfterData() {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.delivery != nil {
		s.delivery.Close()
		s.delivery = nil
	}
}
