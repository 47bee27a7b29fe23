package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	corralotel "github.com/corral-dev/corral/otel"
)

// serveFlags parses serve's configuration: environment first, then flags.
// It returns a non-nil exit code when the command must stop.
func serveFlags(args []string, stdout, stderr io.Writer) (manager.Config, slog.Level, *telemetryFlags, int) {
	cfg := manager.DefaultConfig()
	defaults := cfg
	if err := cfg.FromEnv(os.LookupEnv); err != nil {
		fmt.Fprintf(stderr, "corral serve: %v\n", err)
		return cfg, 0, nil, 2
	}
	fs := flag.NewFlagSet("corral serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout) // asked-for help is output, not an error
		}
	}
	cfg.BindFlags(fs)
	tel := bindTelemetryFlags(fs)
	level := slog.LevelInfo
	fs.TextVar(&level, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: corral serve [flags]\n\nRuns the reference stream manager. Every setting is read from its\nenvironment variable first; a flag overrides it. Durations take seconds\n(\"2.5\") or Go durations (\"500ms\").\n\n")
		var b strings.Builder
		for _, s := range manager.Settings() {
			fmt.Fprintf(&b, "  --%s (env %s, default %s)\n      %s\n", s.Flag, s.Env, s.Default(defaults), s.Usage)
		}
		fmt.Fprintf(&b, "  --log-level (default info)\n      log level: debug, info, warn, error\n")
		b.WriteString(telemetryUsage)
		fmt.Fprint(fs.Output(), b.String())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, level, tel, 0
		}
		return cfg, level, tel, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "corral serve: unexpected argument %q\n", fs.Arg(0))
		return cfg, level, tel, 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "corral serve: %v\n", err)
		return cfg, level, tel, 2
	}
	if err := tel.validate(); err != nil {
		fmt.Fprintf(stderr, "corral serve: %v\n", err)
		return cfg, level, tel, 2
	}
	return cfg, level, tel, -1
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, level, telFlags, code := serveFlags(args, stdout, stderr)
	if code >= 0 {
		return code
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// Signals first, so a signal during start-up is not lost.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	tel, err := startTelemetry(context.Background(), telFlags, log, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "corral serve: %v\n", err)
		return 1
	}
	defer tel.close() // runs after the manager's shutdown: its last spans are flushed

	launcher, err := launch.NewProcesses(launch.ProcessConfig{Subreaper: true, Stderr: os.Stderr, Log: log,
		Env: telFlags.workerEnv()})
	if err != nil {
		fmt.Fprintf(stderr, "corral serve: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		_ = launcher.Close()
		fmt.Fprintf(stderr, "corral serve: %v\n", err)
		return 1
	}
	m, err := manager.New(cfg, manager.Options{Launcher: launcher, Log: log,
		Hook: manager.Hooks(manager.LogEvents(log), corralotel.EventHook())})
	if err != nil {
		_ = ln.Close()
		_ = launcher.Close()
		fmt.Fprintf(stderr, "corral serve: %v\n", err)
		return 2
	}
	tel.watch(m)
	srv := manager.NewServer(manager.Chain(m, manager.Recover(log), corralotel.Middleware(), manager.LogRequests(log)), cfg, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "corral serve: listening on %s (pid %d)\n", ln.Addr(), os.Getpid())

	var serveErr error
	select {
	case sig := <-sigs:
		log.Info("signal received, shutting down", "signal", sig,
			"grace", cfg.TerminationGracePeriod, "join", cfg.ProcessJoinTimeout)
	case serveErr = <-served:
		log.Error("server stopped", "err", serveErr)
	}
	start := time.Now()
	// A second signal skips the rest of the grace period.
	kill, skip := context.WithCancel(context.Background())
	defer skip()
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("second signal, killing workers now", "signal", sig)
			skip()
		case <-kill.Done():
		}
	}()
	bound := cfg.TerminationGracePeriod + cfg.ProcessJoinTimeout + time.Second
	srvCtx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Shutdown(srvCtx) }()
	mErr := m.Shutdown(kill)
	skip()
	<-srvDone
	if serveErr == nil {
		serveErr = <-served
	}
	log.Info("shutdown complete", "duration", time.Since(start))
	if mErr != nil {
		fmt.Fprintf(stderr, "corral serve: %v\n", mErr)
		return 1
	}
	if serveErr != nil && !errors.Is(serveErr, manager.ErrServerClosed) {
		return 1
	}
	return 0
}
