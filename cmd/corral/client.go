package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

const clientUsage = `Usage: corral client [flags] COMMAND [args] [flags]

Commands:
  list                               ids of the running pipelines
  init [--video REF] [--max-fps N] [--buffer N] [--consumption-timeout S] [--payload FILE|JSON]
                                     start a pipeline (REF default synthetic://320x240) with
                                     upstream's full init payload, or the given one
  status ID                          status report
  pause ID | resume ID               mute / resume processing
  consume ID [--exclude a,b]         pop one result
  terminate ID                       stop a pipeline
  inspect                            the manager's own view (pids, health)
  chaos ID FAULT [key=value ...]     inject a fault (manager started with --chaos)

Flags may come before or after the command and its arguments:
  --addr host:port   the manager (default STREAM_MANAGER_HOST:STREAM_MANAGER_PORT, 127.0.0.1:7070)
  --timeout D        bound on the whole request (default 30s)

Prints the response envelope as JSON; exits 1 on a failure response, 2 on usage errors.
`

func client(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" {
		fmt.Fprint(stderr, clientUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	fs := flag.NewFlagSet("corral client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, clientUsage) }
	addr := fs.String("addr", defaultAddr(), "manager address host:port")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole request")
	video := fs.String("video", "synthetic://320x240", "init: video_reference")
	maxFPS := fs.Float64("max-fps", 0, "init: max_fps (0: unset)")
	buffer := fs.Int("buffer", 0, "init: results_buffer_size (0: default 64)")
	consumption := fs.Float64("consumption-timeout", 0, "init: consumption_timeout seconds (0: unset)")
	payload := fs.String("payload", "", "init: the whole init request, as a JSON object or a file holding one (overrides the other init flags)")
	exclude := fs.String("exclude", "", "consume: comma-separated excluded_fields")
	pos, exit, ok := parseInterspersed(fs, args)
	if !ok {
		return exit
	}
	if len(pos) == 0 {
		fmt.Fprintf(stderr, "corral client: no command given\n\n%s", clientUsage)
		return 2
	}
	cmd, pos := pos[0], pos[1:]
	want := map[string]int{"list": 0, "init": 0, "status": 1, "pause": 1, "resume": 1,
		"consume": 1, "terminate": 1, "inspect": 0, "chaos": 2}
	n, ok := want[cmd]
	switch {
	case !ok:
		fmt.Fprintf(stderr, "corral client: unknown command %q\n\n%s", cmd, clientUsage)
		return 2
	case cmd == "chaos" && len(pos) < 2, cmd != "chaos" && len(pos) != n:
		fmt.Fprintf(stderr, "corral client %s: takes %d argument(s), got %d\n", cmd, n, len(pos))
		return 2
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		fmt.Fprintf(stderr, "corral client: --addr %q is invalid: must be host:port\n", *addr)
		return 2
	}

	req := &protocol.Request{Fields: map[string]json.RawMessage{}}
	set := func(k string, v any) { req.Fields[k], _ = json.Marshal(v) }
	switch cmd {
	case "list":
		req.Type = protocol.TypeListPipelines
	case "inspect":
		req.Type = protocol.TypeInspect
	case "init":
		req.Type = protocol.TypeInit
		if *payload != "" {
			fields, err := initPayload(*payload)
			if err != nil {
				fmt.Fprintf(stderr, "corral client init: --payload: %v\n", err)
				return 2
			}
			req.Fields = fields
			break
		}
		cfg := protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: *video}}
		if *maxFPS > 0 {
			cfg.VideoConfiguration.MaxFPS = maxFPS
		}
		cfg.SinkConfiguration.ResultsBufferSize = *buffer
		if *consumption > 0 {
			cfg.ConsumptionTimeout = consumption
		}
		b, _ := json.Marshal(cfg.Defaults())
		_ = json.Unmarshal(b, &req.Fields)
	case "status":
		req.Type, req.PipelineID = protocol.TypeStatus, pos[0]
	case "pause":
		req.Type, req.PipelineID = protocol.TypeMute, pos[0]
	case "resume":
		req.Type, req.PipelineID = protocol.TypeResume, pos[0]
	case "terminate":
		req.Type, req.PipelineID = protocol.TypeTerminate, pos[0]
	case "consume":
		req.Type, req.PipelineID = protocol.TypeConsumeResult, pos[0]
		fields := []string{}
		if *exclude != "" {
			fields = strings.Split(*exclude, ",")
		}
		set("excluded_fields", fields)
	case "chaos":
		req.Type, req.PipelineID = protocol.TypeChaos, pos[0]
		set("fault", pos[1])
		for _, kv := range pos[2:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				fmt.Fprintf(stderr, "corral client chaos: parameter %q must be key=value\n", kv)
				return 2
			}
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				set(k, f)
			} else {
				set(k, v)
			}
		}
	}
	c := &protocol.Client{Addr: *addr, Timeout: *timeout}
	env, err := clientDo(c, req, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "corral client %s: %v\n", cmd, err)
		return 1
	}
	out, _ := json.MarshalIndent(env, "", "  ")
	fmt.Fprintln(stdout, string(out))
	if !env.Response.OK() {
		return 1
	}
	return 0
}

// initPayload reads --payload: a JSON object given inline (it starts with
// '{' once blanks are trimmed) or the name of a file holding one. Its
// "type" key, if any, is dropped: the request is an init whatever it says.
func initPayload(arg string) (map[string]json.RawMessage, error) {
	text := []byte(arg)
	source := "the value"
	if !strings.HasPrefix(strings.TrimSpace(arg), "{") {
		b, err := os.ReadFile(arg)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a JSON object nor a readable file: %w", arg, err)
		}
		text, source = b, "file "+strconv.Quote(arg)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(text, &fields); err != nil || fields == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, fmt.Errorf("%s is not a JSON object: %v", source, err)
	}
	delete(fields, "type")
	return fields, nil
}

// parseInterspersed parses flags that may come before or after positional
// arguments and returns the positional ones. ok is false when the command
// must end with exit (0 after -h, 2 after a bad flag, which fs reported).
func parseInterspersed(fs *flag.FlagSet, args []string) (pos []string, exit int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, 2, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, 0, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func defaultAddr() string {
	host, port := os.Getenv("STREAM_MANAGER_HOST"), os.Getenv("STREAM_MANAGER_PORT")
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "7070"
	}
	return net.JoinHostPort(host, port)
}
