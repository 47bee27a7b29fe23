package chaos_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

func TestManagerSignalThroughHook(t *testing.T) {
	for _, tc := range []struct{ fault, signal string }{
		{protocol.FaultManagerSigterm, "SIGTERM"},
		{protocol.FaultManagerSigkill, "SIGKILL"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			sent := make(chan string, 1)
			target := chaos.Target{Signal: func(sig string) error { sent <- sig; return nil }}
			in, err := mustLookup(t, tc.fault).Inject(t.Context(), target, chaos.Spec{})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-sent:
				if got != tc.signal {
					t.Fatalf("signal = %s, want %s", got, tc.signal)
				}
			default:
				t.Fatal("Signal hook not called")
			}
			if obs := in.Observed(); obs["signal"] != tc.signal || obs["via"] != "hook" {
				t.Fatalf("observed = %v", obs)
			}
			heal(t, in)
		})
	}
}

func TestManagerSignalErrors(t *testing.T) {
	term := mustLookup(t, protocol.FaultManagerSigterm)
	if _, err := term.Inject(t.Context(), chaos.Target{}, chaos.Spec{}); !isErr(err, chaos.ErrNoManagerPid) {
		t.Errorf("no pid: err = %v, want ErrNoManagerPid", err)
	}
	if _, err := term.Inject(t.Context(), chaos.Target{ManagerPid: os.Getpid()}, chaos.Spec{}); !isErr(err, chaos.ErrUnsafeSignal) {
		t.Errorf("own pid: err = %v, want ErrUnsafeSignal", err)
	}
	boom := errors.New("boom")
	_, err := term.Inject(t.Context(), chaos.Target{Signal: func(string) error { return boom }}, chaos.Spec{})
	if !isErr(err, boom) {
		t.Errorf("hook error: err = %v, want it wrapped", err)
	}
}

func TestManagerSigtermByPid(t *testing.T) {
	// A child process stands for a separately started manager.
	cmd := exec.CommandContext(t.Context(), "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	in, err := mustLookup(t, protocol.FaultManagerSigterm).Inject(t.Context(), chaos.Target{ManagerPid: cmd.Process.Pid}, chaos.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if obs := in.Observed(); obs["via"] != "kill" || obs["pid"] != cmd.Process.Pid {
		t.Fatalf("observed = %v", obs)
	}
	select {
	case err := <-waited:
		if err == nil || !strings.Contains(err.Error(), "terminated") {
			t.Fatalf("manager ended with %v, want terminated", err)
		}
	case <-time.After(wait):
		t.Fatal("manager not terminated")
	}
}
