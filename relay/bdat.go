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
// So Data holds session.dataMu while it runs; Reset waits for it (the pipe
// is closed by then, so Data ends); Logout, which may come before the pipe
// is closed, cancels the session's context and leaves closing the
// upstream connection to logoutAfterData; AUTH inside a transaction is
// refused (RFC 4954 §4); and Data reads nothing from go-smtp's Conn,
// whose fields the command loop writes: the EHLO name is taken in Mail and
// the connection's limits in newSession.

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
