package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/logsink"
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
	// Logging never blocks a request and never fails one: lines go through
	// a bounded queue, and a closed or stalled stderr loses lines (counted,
	// reported once it comes back or at exit), nothing else.
	sink := logsink.New(stderr, 0)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = sink.Close(ctx)
	}()
	log := slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: level}))
	// Signals first, so a signal during start-up is not lost.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	tel, err := startTelemetry(context.Background(), telFlags, log, stdout)
	if err != nil {
		fmt.Fprintf(sink, "corral serve: %v\n", err) // in order with the log lines
		return 1
	}
	defer tel.close() // runs after the manager's shutdown: its last spans are flushed

	launcher, err := launch.NewProcesses(launch.ProcessConfig{Subreaper: true, Stderr: os.Stderr, Log: log,
		Env: telFlags.workerEnv()})
	if err != nil {
		fmt.Fprintf(sink, "corral serve: %v\n", err) // in order with the log lines
		return 1
	}
	svc, err := manager.StartService(cfg, manager.Options{Launcher: launcher, Log: log,
		Hook: manager.Hooks(manager.LogEvents(log), corralotel.EventHook())},
		corralotel.Middleware(), manager.LogRequests(log))
	if err != nil {
		fmt.Fprintf(sink, "corral serve: %v\n", err) // in order with the log lines
		var ce *manager.ConfigError
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	tel.watch(svc.Manager())
	fmt.Fprintf(stdout, "corral serve: listening on %s (pid %d)\n", svc.Addr(), os.Getpid())

	select {
	case sig := <-sigs:
		log.Info("signal received, shutting down", "signal", sig,
			"grace", cfg.TerminationGracePeriod, "join", cfg.ProcessJoinTimeout)
	case <-svc.Served():
		log.Error("server stopped serving; shutting down")
	}
	start := time.Now()
	// A second signal hurries the shutdown: the rest of the grace period is
	// skipped and requests in flight are cancelled.
	hurry, skip := context.WithCancel(context.Background())
	defer skip()
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		select {
		case sig := <-sigs:
			log.Warn("second signal, killing workers now", "signal", sig)
			skip()
		case <-hurry.Done():
		}
	}()
	err = svc.Shutdown(hurry)
	skip()
	<-watching
	log.Info("shutdown complete", "duration", time.Since(start))
	if err != nil {
		fmt.Fprintf(sink, "corral serve: %v\n", err) // in order with the log lines
		return 1
	}
	return 0
}
