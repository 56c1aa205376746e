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

	"github.com/relaymail/relay/admin"
	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/relay"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// shutdownGrace is how long SIGTERM lets SMTP transactions in progress
// finish before their connections are closed.
const shutdownGrace = 30 * time.Second

func runServe(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	return serve(context.Background(), args, stdout, stderr, serveHooks{})
}

// serve runs relay serve until a signal or the cancellation of ctx stops
// it; both drain the same way.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer, hooks serveHooks) int {
	fs := newFlagSet("serve", stderr)
	cfgFlag := fs.String("config", "", "configuration file (default $RELAY_CONFIG, else ./relay.toml, else the embedded default)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	debug := fs.Bool("debug", false, "log debug messages")
	listen := fs.String("listen", "", "SMTP listen address, overriding server.listen (e.g. 127.0.0.1:0 for any free port)")
	var adminListen *string
	fs.Func("admin-listen", "admin listen address, overriding admin.listen (\"\" turns the admin listener off)", func(v string) error {
		adminListen = &v
		return nil
	})
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
	if hooks.logHandler != nil {
		logger = slog.New(hooks.logHandler(logger.Handler()))
	}
	// The packages add their own component to logger; this is the
	// process's own.
	log := logger.With("component", "relay")
	cfg, err := loadConfig(*cfgFlag, io.Discard) // warnings are logged below
	if err != nil {
		logConfigError(stderr, log, *logFormat, err)
		return exitConfig
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", "warning", w)
	}

	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	if adminListen != nil {
		cfg.Admin.Listen = *adminListen
	}
	sp, err := spool.Open(filepath.Join(cfg.Server.DataDir, "spool"), spool.Options{Logger: logger})
	if err != nil {
		log.Error("relay does not start", "error", err.Error())
		return exitFail
	}
	defer sp.Close()
	tokens, err := oauth.NewManager(cfg, oauth.Options{Logger: logger, RefreshAhead: true})
	if err != nil {
		log.Error("relay does not start", "error", err.Error())
		return exitFail
	}
	defer tokens.Close()
	metrics := admin.NewMetrics()
	srv, err := relay.NewServer(cfg, relay.Options{Logger: logger, Transports: relay.Transports(upstream.Options{Logger: logger}, tokens), Spool: sp, Events: metrics.Observe})
	if err != nil {
		log.Error("relay does not start", "config", cfg.File, "error", err.Error())
		return exitFail
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		log.Error("relay does not start", "listen", cfg.Server.Listen, "error", err.Error())
		return exitFail
	}
	var smtps net.Listener // implicit TLS (RFC 8314), when smtps_listen is set
	if cfg.Server.SMTPSListen != "" {
		if smtps, err = net.Listen("tcp", cfg.Server.SMTPSListen); err != nil {
			ln.Close()
			log.Error("relay does not start", "smtps_listen", cfg.Server.SMTPSListen, "error", err.Error())
			return exitFail
		}
	}
	announce(stdout, cfg, ln.Addr().String(), smtps)
	stopAdmin, err := serveAdmin(cfg, srv, tokens, metrics, logger)
	if err != nil {
		log.Error("relay does not start", "error", err.Error())
		return exitFail
	}
	defer stopAdmin()
	started := []any{"listen", ln.Addr().String()}
	serving := "serving SMTP on " + ln.Addr().String()
	if smtps != nil {
		started = append(started, "smtps_listen", smtps.Addr().String())
		serving += " and SMTPS on " + smtps.Addr().String()
	}
	log.Info("relay started", append(started, "config", cfg.File, "profiles", len(cfg.Profiles), "queued", sp.Len(), "version", versionLine())...)
	var sd stateNotifier = newNotifier(log)
	if hooks.notifier != nil {
		sd = hooks.notifier(log)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Both listeners stop together: Shutdown and Close end every listener
	// of the server; the first to fail stops relay.
	served := make(chan error, 2)
	listeners := 1
	go func() { served <- srv.Serve(ln) }()
	if smtps != nil {
		listeners++
		go func() { served <- srv.ServeTLS(smtps) }()
	}
	// waitServed waits for the listeners still serving after the first.
	waitServed := func() {
		for i := 1; i < listeners; i++ {
			<-served
		}
	}
	qctx, stopQueue := context.WithCancel(context.Background())
	defer stopQueue()
	queueDone := make(chan struct{})
	go func() { srv.RunQueue(qctx); close(queueDone) }()
	// stopDelivery lets deliveries in progress finish within the grace,
	// then cuts them; their messages stay queued for the next start.
	stopDelivery := func(grace time.Duration) {
		stopQueue()
		select {
		case <-queueDone:
		case <-time.After(grace):
			srv.Queue().Close()
			<-queueDone
		}
	}
	reloadNow := func() {
		sd.reloading("reloading " + cfg.File)
		sd.ready(serving + "; " + reload(srv, tokens, cfg.File, log))
	}
	// The spool was scanned when it opened and the queue delivers what it
	// holds: now systemd may call relay started.
	sd.ready(serving)
	for {
		select {
		case err := <-served:
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			srv.Shutdown(sctx) // the other listener too
			cancel()
			waitServed()
			stopDelivery(time.Second)
			if err != nil {
				log.Error("smtp listener failed", "error", err)
				return exitFail
			}
			return exitOK
		case <-hup:
			reloadNow()
		case <-hooks.reload:
			reloadNow()
		case <-ctx.Done():
			sd.stopping("stopping: waiting for transactions in progress")
			log.Info("shutting down: no new connections; waiting for transactions in progress", "grace", shutdownGrace)
			sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			err := srv.Shutdown(sctx)
			cancel()
			if err != nil {
				log.Warn("connections closed after the shutdown grace period", "error", err)
			}
			<-served
			waitServed()
			stopDelivery(10 * time.Second)
			log.Info("relay stopped")
			return exitOK
		}
	}
}

// reload re-reads the configuration file on SIGHUP. A bad file is logged
// with its lines and the configuration in effect stays. It returns a
// one-line status for systemd.
func reload(srv *relay.Server, tokens *oauth.Manager, file string, log *slog.Logger) string {
	if file == config.EmbeddedName {
		log.Info("nothing to reload: running on the embedded default")
		return "embedded default: nothing to reload"
	}
	cfg, err := config.Load(file)
	if err != nil {
		log.Error("reload refused: the configuration in effect stays", "config", file, "error", err.Error())
		return "reload refused: " + err.Error()
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", "warning", w)
	}
	if err := tokens.Apply(cfg); err != nil {
		log.Error("reload refused: the configuration in effect stays", "config", file, "error", err.Error())
		return "reload refused: " + err.Error()
	}
	old := srv.Config()
	if err := srv.Apply(cfg); err != nil {
		log.Error("reload refused: the configuration in effect stays", "config", file, "error", err.Error())
		return "reload refused: " + err.Error()
	}
	for _, key := range relay.RestartOnly(old, cfg) {
		log.Warn("setting takes effect only after a restart", "key", key)
	}
	log.Info("configuration reloaded", "config", file, "profiles", len(cfg.Profiles))
	return "configuration reloaded"
}

// serveAdmin serves the admin listener (package admin): the pages, the
// JSON API, /oauth2/callback, /metrics and /healthz. stop shuts it down.
func serveAdmin(cfg *config.Config, srv *relay.Server, tokens *oauth.Manager, metrics *admin.Metrics, logger *slog.Logger) (stop func(), err error) {
	if cfg.Admin.Listen == "" {
		return func() {}, nil
	}
	log := logger.With("component", "relay")
	as, err := admin.New(admin.Options{Relay: srv, Tokens: tokens, Metrics: metrics, Logger: logger})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", cfg.Admin.Listen, err)
	}
	go as.Serve(ln)
	log.Info("admin listener started", "listen", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := as.Shutdown(ctx); err != nil {
			log.Warn("admin listener shutdown failed", "error", err)
		}
	}, nil
}

// announce tells a person at the terminal what runs and where mail goes.
func announce(w io.Writer, cfg *config.Config, addr string, smtps net.Listener) {
	fmt.Fprintf(w, "relay: listening for SMTP on %s (config: %s)\n", addr, cfg.File)
	if smtps != nil {
		fmt.Fprintf(w, "relay: listening for SMTPS (implicit TLS) on %s\n", smtps.Addr())
	}
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
		noteSystemConfig(w)
	}
}
