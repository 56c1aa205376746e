package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/relay"
	"github.com/relaymail/relay/upstream"
)

// shutdownGrace is how long SIGTERM lets SMTP transactions in progress
// finish before their connections are closed.
const shutdownGrace = 30 * time.Second

func runServe(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", stderr)
	cfgFlag := fs.String("config", "", "configuration file (default $RELAY_CONFIG, else ./relay.toml, else the embedded default)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	debug := fs.Bool("debug", false, "log debug messages")
	listen := fs.String("listen", "", "SMTP listen address, overriding server.listen (e.g. 127.0.0.1:0 for any free port)")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger, err := newLogger(stderr, *logFormat, level)
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return exitFail
	}
	cfg, err := loadConfig(*cfgFlag, io.Discard) // warnings are logged below
	if err != nil {
		logConfigError(stderr, logger, *logFormat, err)
		return exitConfig
	}
	for _, w := range cfg.Warnings {
		logger.Warn("configuration warning", "warning", w)
	}

	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	srv, err := relay.NewServer(cfg, relay.Options{Logger: logger, Transports: transports(logger)})
	if err != nil {
		logger.Error("relay does not start", "config", cfg.File, "error", err.Error())
		return exitFail
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		logger.Error("relay does not start: cannot listen", "listen", cfg.Server.Listen, "error", err.Error())
		return exitFail
	}
	announce(stdout, cfg, ln.Addr().String())
	logger.Info("relay started", "listen", ln.Addr().String(), "config", cfg.File, "profiles", len(cfg.Profiles), "version", versionLine())
	sd := newNotifier(logger)
	serving := "serving SMTP on " + ln.Addr().String()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// SPOOL HOOK: when the durable spool lands, open and scan it here, before
	// READY=1, so that systemd reports relay started only once queued mail is
	// being delivered again.
	sd.ready(serving)
	for {
		select {
		case err := <-served:
			if err != nil {
				logger.Error("smtp listener failed", "error", err)
				return exitFail
			}
			return exitOK
		case <-hup:
			sd.reloading("reloading " + cfg.File)
			sd.ready(serving + "; " + reload(srv, cfg.File, logger))
		case <-ctx.Done():
			sd.stopping("stopping: waiting for transactions in progress")
			logger.Info("shutting down: no new connections; waiting for transactions in progress", "grace", shutdownGrace)
			sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			err := srv.Shutdown(sctx)
			cancel()
			if err != nil {
				logger.Warn("shutdown: connections closed after the grace period", "error", err)
			}
			<-served
			logger.Info("relay stopped")
			return exitOK
		}
	}
}

// reload re-reads the configuration file on SIGHUP. A bad file is logged
// with its lines and the configuration in effect stays. It returns a
// one-line status for systemd.
func reload(srv *relay.Server, file string, logger *slog.Logger) string {
	if file == config.EmbeddedName {
		logger.Info("reload: running on the embedded default; nothing to reload")
		return "embedded default: nothing to reload"
	}
	cfg, err := config.Load(file)
	if err != nil {
		logger.Error("reload refused: the configuration in effect stays", "config", file, "error", err.Error())
		return "reload refused: " + err.Error()
	}
	for _, w := range cfg.Warnings {
		logger.Warn("configuration warning", "warning", w)
	}
	if err := srv.Apply(cfg); err != nil {
		logger.Error("reload refused: the configuration in effect stays", "config", file, "error", err.Error())
		return "reload refused: " + err.Error()
	}
	logger.Info("configuration reloaded", "config", file, "profiles", len(cfg.Profiles))
	return "configuration reloaded"
}

// transports makes each profile's transport: a Maildir, or an upstream
// SMTP server.
func transports(logger *slog.Logger) relay.TransportFactory {
	return func(p *config.Profile) (relay.Transport, error) {
		if p.Kind == config.KindMaildir {
			return relay.NewMaildir(p.Path)
		}
		if p.IsOAuth2() {
			return nil, fmt.Errorf("OAuth2 profiles are not supported by this build yet")
		}
		s, err := upstream.New(p, upstream.Options{Logger: logger})
		if err != nil {
			return nil, err
		}
		return relay.SenderTransport(s), nil
	}
}

// announce tells a person at the terminal what runs and where mail goes.
func announce(w io.Writer, cfg *config.Config, addr string) {
	fmt.Fprintf(w, "relay: listening for SMTP on %s (config: %s)\n", addr, cfg.File)
	for _, p := range cfg.Profiles {
		fmt.Fprintf(w, "relay: profile %s: %s, %s, delivery %s\n", p.Name, p.Upstream(), p.AuthMethod(), p.Delivery)
	}
	if cfg.File == config.EmbeddedName {
		dir := cfg.Profiles[0].Path
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		fmt.Fprintf(w, "relay: no configuration file: mail from this machine goes into %s/new/\n", dir)
		fmt.Fprintln(w, "relay: to send through Office 365, Gmail or your own server, copy relay.toml.example to relay.toml, add a [[profiles]] entry, and run relay check")
	}
}
