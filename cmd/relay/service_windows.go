package main

// relay as a Windows service: relay service install|uninstall|start|stop|
// status manage it through the Service Control Manager, which starts
// relay service run.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/relaymail/relay/config"
)

// The directories' ACLs, in SDDL. P: the DACL does not inherit from
// %ProgramData%, whose ACL lets every user create files; OICI: files and
// subdirectories inherit each entry.
const (
	// SYSTEM and Administrators: full control; Users: read relay.toml
	// (relay sendmail reads server.listen from it).
	rootSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;GRGX;;;BU)"
	// SYSTEM and Administrators only: the spool, tokens, secrets, logs.
	privateSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
)

// How long the Service Control Manager waits for a start or a stop: a
// stop drains transactions (shutdownGrace), then deliveries (10 s), then
// the admin listener (5 s).
const (
	startWaitHint = 30 * time.Second
	stopWaitHint  = shutdownGrace + 30*time.Second
)

// programDataLayout is the layout under %ProgramData%.
func programDataLayout() windowsLayout { return layoutUnder(programData()) }

// programData is %ProgramData%, usually C:\ProgramData.
func programData() string {
	dir, err := windows.KnownFolderPath(windows.FOLDERID_ProgramData, 0)
	if err != nil || dir == "" {
		dir = os.Getenv("ProgramData")
	}
	if dir == "" {
		dir = `C:\ProgramData`
	}
	return dir
}

func serviceCommand(sub string, args []string, stdout, stderr io.Writer) int {
	switch sub {
	case "install":
		return serviceInstall(args, stdout, stderr)
	case "uninstall":
		return serviceUninstall(stdout, stderr)
	case "start", "stop", "status":
		return serviceControl(sub, stdout, stderr)
	case "run":
		return serviceRun(args, stderr)
	}
	fmt.Fprintf(stderr, "relay service: unknown subcommand %q\n%s", sub, serviceUsage)
	return exitFail
}

// protectDir makes dir (if missing) and gives it the DACL of sddl,
// replacing what it inherited; its files and subdirectories inherit it.
func protectDir(dir, sddl string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return fmt.Errorf("ACL %s: %w", sddl, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("ACL %s: %w", sddl, err)
	}
	err = windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("set the ACL of %s: %w", dir, err)
	}
	return nil
}

// prepare makes the directories of the layout with their ACLs and, if
// dataDir is set, that directory too with the private ACL.
func (l windowsLayout) prepare(dataDir string) error {
	for _, d := range []struct{ dir, sddl string }{{l.root, rootSDDL}, {l.data, privateSDDL}, {l.logs, privateSDDL}, {dataDir, privateSDDL}} {
		if d.dir == "" {
			continue
		}
		if err := protectDir(d.dir, d.sddl); err != nil {
			return err
		}
	}
	return nil
}

func serviceInstall(args []string, stdout, stderr io.Writer) int {
	layout := programDataLayout()
	fs := newFlagSet("service install", stderr)
	cfgFlag := fs.String("config", layout.config, "configuration file the service runs with")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.Abs(exe)
	}
	cfgFile, cerr := filepath.Abs(*cfgFlag)
	if err = errors.Join(err, cerr); err != nil {
		fmt.Fprintf(stderr, "relay service install: %v\n", err)
		return exitFail
	}
	if err := layout.prepare(""); err != nil {
		fmt.Fprintf(stderr, "relay service install: %v (run it from an elevated prompt: Run as administrator)\n", err)
		return exitFail
	}
	if err := writeDefaultConfig(layout, cfgFile, stdout); err != nil {
		fmt.Fprintf(stderr, "relay service install: %v\n", err)
		return exitFail
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	if err := protectDir(dataDirOf(cfg, cfgFile), privateSDDL); err != nil {
		fmt.Fprintf(stderr, "relay service install: data_dir: %v\n", err)
		return exitFail
	}
	m, err := mgr.Connect()
	if err != nil {
		fmt.Fprintf(stderr, "relay service install: the Service Control Manager: %v (run it from an elevated prompt: Run as administrator)\n", err)
		return exitFail
	}
	defer m.Disconnect()
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		fmt.Fprintf(stderr, "relay service install: the service %q exists already; to change it: relay service uninstall, then install again\n", serviceName)
		return exitFail
	}
	s, err := m.CreateService(serviceName, exe, mgr.Config{
		DisplayName: "relay SMTP relay",
		Description: "Relays mail of local applications to Office 365, Gmail or any SMTP server (relay.toml: " + cfgFile + ")",
		StartType:   mgr.StartAutomatic,
	}, "service", "run", "-config", cfgFile)
	if err != nil {
		fmt.Fprintf(stderr, "relay service install: %v\n", err)
		return exitFail
	}
	defer s.Close()
	// Restart after a crash, as systemd's Restart=on-failure. A
	// configuration error is a stop with an exit code, not a crash: the
	// service stays stopped rather than failing in a loop.
	restart := mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: 5 * time.Second}
	if err := s.SetRecoveryActions([]mgr.RecoveryAction{restart, restart, restart}, uint32((24 * time.Hour).Seconds())); err != nil {
		fmt.Fprintf(stderr, "relay service install: warning: recovery actions: %v\n", err)
	}
	if err := eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil && !strings.Contains(err.Error(), "exists") {
		fmt.Fprintf(stderr, "relay service install: warning: Event Log source %q: %v\n", serviceName, err)
	}
	fmt.Fprintf(stdout, "installed the service %q: %s service run -config %s\n", serviceName, exe, cfgFile)
	fmt.Fprintf(stdout, "it starts with Windows; start it now: relay service start\n")
	return exitOK
}

// dataDirOf is server.data_dir of cfg, read from cfgFile: the service
// runs in the directory of its configuration file, so a relative data_dir
// is relative to it.
func dataDirOf(cfg *config.Config, cfgFile string) string {
	if filepath.IsAbs(cfg.Server.DataDir) {
		return cfg.Server.DataDir
	}
	return filepath.Join(filepath.Dir(cfgFile), cfg.Server.DataDir)
}

// writeDefaultConfig writes the layout's default relay.toml when the
// service runs with it and it does not exist.
func writeDefaultConfig(l windowsLayout, cfgFile string, stdout io.Writer) error {
	if !strings.EqualFold(cfgFile, l.config) {
		return nil
	}
	if _, err := os.Stat(cfgFile); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	text, err := l.defaultConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfgFile, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: mail goes into %s\\maildir until you add a profile\n", cfgFile, l.data)
	return nil
}

func serviceUninstall(stdout, stderr io.Writer) int {
	m, s, err := openService()
	if err != nil {
		fmt.Fprintf(stderr, "relay service uninstall: %v\n", err)
		return exitFail
	}
	defer m.Disconnect()
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if err := stopService(s); err != nil {
			fmt.Fprintf(stderr, "relay service uninstall: %v\n", err)
			return exitFail
		}
	}
	if err := s.Delete(); err != nil {
		fmt.Fprintf(stderr, "relay service uninstall: %v\n", err)
		return exitFail
	}
	if err := eventlog.Remove(serviceName); err != nil {
		fmt.Fprintf(stderr, "relay service uninstall: warning: Event Log source: %v\n", err)
	}
	fmt.Fprintf(stdout, "removed the service %q; %s (configuration, queue, tokens, logs) stays: delete it to drop them\n", serviceName, programDataLayout().root)
	return exitOK
}

// openService connects to the Service Control Manager and opens relay's
// service.
func openService() (*mgr.Mgr, *mgr.Service, error) {
	m, err := mgr.Connect()
	if err != nil {
		return nil, nil, fmt.Errorf("the Service Control Manager: %w (run it from an elevated prompt: Run as administrator)", err)
	}
	s, err := m.OpenService(serviceName)
	if err != nil {
		m.Disconnect()
		return nil, nil, fmt.Errorf("the service %q: %w (install it: relay service install)", serviceName, err)
	}
	return m, s, nil
}

func serviceControl(sub string, stdout, stderr io.Writer) int {
	m, s, err := openService()
	if err != nil {
		fmt.Fprintf(stderr, "relay service %s: %v\n", sub, err)
		return exitFail
	}
	defer m.Disconnect()
	defer s.Close()
	switch sub {
	case "start":
		err = startService(s)
	case "stop":
		err = stopService(s)
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay service %s: %v\n", sub, err)
		return exitFail
	}
	st, err := s.Query()
	if err != nil {
		fmt.Fprintf(stderr, "relay service %s: %v\n", sub, err)
		return exitFail
	}
	fmt.Fprintf(stdout, "service %q: %s\n", serviceName, stateName(st.State))
	return exitOK
}

// startService starts the service and waits until it runs (relay accepts
// connections) or stops again.
func startService(s *mgr.Service) error {
	if err := s.Start(); err != nil {
		return err
	}
	st, err := waitState(s, startWaitHint+10*time.Second, svc.Running, svc.Stopped)
	if err != nil {
		return err
	}
	if st.State == svc.Stopped {
		return fmt.Errorf("relay stopped at once with exit status %d: see Event Viewer (Windows Logs, Application, source relay) and %s", st.ServiceSpecificExitCode, programDataLayout().logs+`\relay.log`)
	}
	return nil
}

// stopService asks the service to stop and waits until it has drained.
func stopService(s *mgr.Service) error {
	if _, err := s.Control(svc.Stop); err != nil {
		return err
	}
	_, err := waitState(s, stopWaitHint+10*time.Second, svc.Stopped)
	return err
}

// waitState polls the service until it is in one of the states, at most
// for timeout.
func waitState(s *mgr.Service, timeout time.Duration, states ...svc.State) (svc.Status, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.Query()
		if err != nil {
			return st, err
		}
		for _, want := range states {
			if st.State == want {
				return st, nil
			}
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("still %s after %v", stateName(st.State), timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func stateName(s svc.State) string {
	switch s {
	case svc.Stopped:
		return "stopped"
	case svc.StartPending:
		return "starting"
	case svc.StopPending:
		return "stopping"
	case svc.Running:
		return "running"
	case svc.ContinuePending, svc.PausePending, svc.Paused:
		return "paused"
	}
	return fmt.Sprintf("state %d", s)
}

// serviceRun is what the Service Control Manager starts.
func serviceRun(args []string, stderr io.Writer) int {
	if is, err := svc.IsWindowsService(); err != nil || !is {
		fmt.Fprintln(stderr, "relay service run is started by the Service Control Manager; in a console, run relay serve")
		return exitFail
	}
	layout := programDataLayout()
	fs := newFlagSet("service run", stderr)
	cfgFile := fs.String("config", layout.config, "configuration file")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	var sink eventSink = discardEvents{}
	if l, err := eventlog.Open(serviceName); err == nil {
		defer l.Close()
		sink = l
	}
	s := &windowsService{config: *cfgFile, layout: layout, events: sink}
	if err := svc.Run(serviceName, s); err != nil {
		sink.Error(eventExit, "relay service run: "+err.Error())
		return exitFail
	}
	return s.code
}

// windowsService runs relay serve under the Service Control Manager.
type windowsService struct {
	config string
	layout windowsLayout
	events eventSink
	code   int // relay serve's exit status
}

// Execute implements svc.Handler.
func (s *windowsService) Execute(_ []string, requests <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending, WaitHint: uint32(startWaitHint.Milliseconds())}
	s.code = s.run(requests, status)
	if s.code != exitOK {
		return true, uint32(s.code) // the service-specific exit code: relay's exit status
	}
	return false, 0
}

func (s *windowsService) run(requests <-chan svc.ChangeRequest, status chan<- svc.Status) int {
	logName := s.layout.logs + `\relay.log`
	cfg, err := config.Load(s.config)
	var dataDir string
	if err == nil {
		dataDir = dataDirOf(cfg, s.config)
	}
	if perr := s.layout.prepare(dataDir); perr != nil {
		s.events.Error(eventExit, "relay does not start: "+perr.Error())
		return exitFail
	}
	logFile, lerr := openServiceLog(logName)
	if lerr != nil {
		s.events.Error(eventExit, "relay does not start: "+lerr.Error())
		return exitFail
	}
	defer logFile.Close()
	if err != nil {
		var b strings.Builder
		printConfigError(&b, err)
		logFile.WriteString(b.String())
		s.events.Error(eventExit, "relay does not start: configuration refused:\r\n"+b.String())
		return exitConfig
	}
	// Relative paths in the configuration are relative to its directory
	// (a service starts in %SystemRoot%\System32).
	if err := os.Chdir(filepath.Dir(s.config)); err != nil {
		s.events.Error(eventExit, "relay does not start: "+err.Error())
		return exitFail
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan struct{}, 1)
	done := make(chan int, 1)
	hooks := serveHooks{
		logHandler: func(h slog.Handler) slog.Handler { return slog.NewMultiHandler(h, newEventLogHandler(s.events)) },
		notifier:   func(*slog.Logger) stateNotifier { return &scmNotifier{status: status, events: s.events} },
		reload:     reload,
	}
	go func() { done <- serve(ctx, []string{"-config", s.config}, io.Discard, logFile, hooks) }()
	for {
		select {
		case code := <-done:
			if code != exitOK {
				s.events.Error(eventExit, fmt.Sprintf("relay stopped with exit status %d; its log: %s", code, logName))
			}
			return code
		case r := <-requests:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				cancel() // the same drain as SIGTERM
			case svc.ParamChange:
				select { // sc.exe control relay paramchange: reload, as SIGHUP
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}
}

// scmNotifier reports relay serve's state to the Service Control Manager
// and, as information, to the Event Log.
type scmNotifier struct {
	status chan<- svc.Status
	events eventSink
}

// ready: relay accepts connections, so the service runs.
func (n *scmNotifier) ready(status string) {
	n.status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown | svc.AcceptParamChange}
	n.events.Info(eventState, status)
}

func (n *scmNotifier) reloading(status string) { n.events.Info(eventState, status) }

func (n *scmNotifier) stopping(status string) {
	n.status <- svc.Status{State: svc.StopPending, WaitHint: uint32(stopWaitHint.Milliseconds())}
	n.events.Info(eventState, status)
}

// discardEvents stands in for an Event Log that cannot be opened.
type discardEvents struct{}

func (discardEvents) Info(uint32, string) error    { return nil }
func (discardEvents) Warning(uint32, string) error { return nil }
func (discardEvents) Error(uint32, string) error   { return nil }
