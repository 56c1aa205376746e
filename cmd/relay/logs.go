package main

import (
	"errors"
	"io"
	"log/slog"

	"github.com/relaymail/relay/config"
)

// logConfigError reports a configuration that stops relay from starting.
// In the text format a person reads it at a terminal or in journalctl, so
// each problem is a plain FILE:LINE line; in the JSON format it is one
// JSON line, like every other line relay writes, with the problems as a
// list.
func logConfigError(stderr io.Writer, logger *slog.Logger, format string, err error) {
	if format != "json" {
		printConfigError(stderr, err)
		return
	}
	var problems []string
	var ce *config.Error
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			problems = append(problems, p.String())
		}
	} else {
		problems = []string{err.Error()}
	}
	logger.Error("configuration refused: relay does not start", "problems", problems)
}

// dropTime leaves out the time of each record.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
