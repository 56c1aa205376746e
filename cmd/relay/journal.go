package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
)

// Under systemd, journald reads relay's stderr line by line and stores
// every line with priority 6 (info) unless the line starts with a syslog
// priority such as "<3>" (sd-daemon(3)), which it takes off. relay puts
// one there on each line it writes to the journal, so that
// `journalctl -u relay -p warning` lists the failed deliveries and refused
// reloads, and journalctl and systemctl status highlight them.

// journalPriority is the sd-daemon(3) prefix of a record of level l.
func journalPriority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>" // LOG_ERR
	case l >= slog.LevelWarn:
		return "<4>" // LOG_WARNING
	case l >= slog.LevelInfo:
		return "<6>" // LOG_INFO
	default:
		return "<7>" // LOG_DEBUG
	}
}

// priorityHandler writes each record that inner formats with its
// journalPriority in front, in one Write.
type priorityHandler struct {
	inner slog.Handler // writes into out.buf
	out   *priorityOut
}

// priorityOut is shared by a handler and those WithAttrs and WithGroup
// make from it.
type priorityOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   io.Writer
}

// newPriorityHandler makes the handler newInner(buffer) and writes what
// it formats to w, prefixed.
func newPriorityHandler(w io.Writer, newInner func(io.Writer) slog.Handler) slog.Handler {
	out := &priorityOut{w: w}
	return &priorityHandler{inner: newInner(&out.buf), out: out}
}

func (h *priorityHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *priorityHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	h.out.buf.WriteString(journalPriority(r.Level))
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.out.w.Write(h.out.buf.Bytes())
	return err
}

func (h *priorityHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &priorityHandler{inner: h.inner.WithAttrs(attrs), out: h.out}
}

func (h *priorityHandler) WithGroup(name string) slog.Handler {
	return &priorityHandler{inner: h.inner.WithGroup(name), out: h.out}
}
