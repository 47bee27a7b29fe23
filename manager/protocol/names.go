package protocol

// Fault names of the harness's fault catalogue (package chaos): they appear
// in scenario files, in histories and reports, and in `corral scenarios`.
// Worker-level faults travel on the wire as the "fault" field of a chaos
// command (the Chaos* values below); the others act from outside (signals,
// misbehaving clients). A checker decides by the catalogue entry's
// properties (chaos.Fault), never by comparing these names.
const (
	FaultCrash            = "crash"             // SIGKILL to the worker's process group
	FaultHangProcess      = "hang_process"      // SIGSTOP, healed with SIGCONT
	FaultHangQueue        = "hang_queue"        // chaos hang_queue
	FaultSlowProbe        = "slow_probe"        // chaos slow_probe
	FaultStaleResponses   = "stale_responses"   // chaos stale_responses
	FaultGarbageOutput    = "garbage_output"    // chaos garbage_output
	FaultIgnoreSigterm    = "ignore_sigterm"    // chaos ignore_sigterm
	FaultSlowStart        = "slow_start"        // chaos slow_start
	FaultSpawnGrandchild  = "spawn_grandchild"  // chaos spawn_grandchild
	FaultWorkerCrash      = "worker_crash"      // chaos crash
	FaultFreezeSource     = "freeze_source"     // chaos freeze_source
	FaultClientStall      = "client_stall"      // a half-sent frame, held open
	FaultClientDisconnect = "client_disconnect" // a request, then a reset before the answer
	FaultOversizedFrame   = "oversized_frame"   // a length prefix past the frame limit
	FaultMalformedFrame   = "malformed_frame"   // a frame whose body is not JSON
	FaultClientBurst      = "client_burst"      // many connections at once
	FaultInitStorm        = "init_storm"        // many concurrent inits (heal: terminate them)
	FaultAbandonRequest   = "abandon_request"   // complete requests, then a reset each
	FaultManagerSigterm   = "manager_sigterm"   // SIGTERM to the manager
	FaultManagerSigkill   = "manager_sigkill"   // SIGKILL to the manager
)

// Values of a chaos command's "fault" field, obeyed by a worker started
// with EnvWorkerChaos=1 (manager/worker). ChaosHeal undoes every armed
// fault (a spawned grandchild excepted).
const (
	ChaosHangQueue       = "hang_queue"
	ChaosSlowProbe       = "slow_probe"
	ChaosStaleResponses  = "stale_responses"
	ChaosGarbageOutput   = "garbage_output"
	ChaosIgnoreSigterm   = "ignore_sigterm"
	ChaosCrash           = "crash"
	ChaosSlowStart       = "slow_start"
	ChaosSpawnGrandchild = "spawn_grandchild"
	// ChaosFreezeSource holds every source of the pipeline connected but
	// delivering no frame (a camera that stops sending), until heal.
	ChaosFreezeSource = "freeze_source"
	ChaosHeal         = "heal"
)

// Fields of a chaos command (besides type and pipeline_id). Numbers are
// non-negative; seconds may be fractional.
const (
	ChaosFieldFault = "fault"
	// ChaosFieldDurationSeconds: how long hang_queue lasts (0: until heal).
	ChaosFieldDurationSeconds = "duration_seconds"
	// ChaosFieldDelaySeconds: slow_probe's and slow_start's delay, and the
	// delay before a crash (0: at once, with no reply).
	ChaosFieldDelaySeconds = "delay_seconds"
	// ChaosFieldExitCode: the crash's exit status, 0..255 (default 1).
	ChaosFieldExitCode = "exit_code"
)

// Environment variables of a worker process, set by the manager's launcher
// (manager/launch) and read by the worker (manager/worker) and by anything
// that looks for a manager's workers in /proc (the harness's census).
const (
	// EnvWorkerMode selects what the worker binary runs: "worker" or
	// "grandchild".
	EnvWorkerMode = "CORRAL_WORKER_MODE"
	// EnvWorkerChaos set to "1" lets the worker obey chaos commands.
	EnvWorkerChaos = "CORRAL_WORKER_CHAOS"
	// EnvPipelineID names the pipeline (or warm-pool slot) the worker
	// serves; the manager keeps the id when a warm worker is taken.
	EnvPipelineID = "CORRAL_PIPELINE_ID"
	// EnvManagerMarker carries the launcher's marker into every worker and
	// its descendants, so that even one that left the worker's process
	// group and was reparented can be found and killed.
	EnvManagerMarker = "CORRAL_MANAGER"
)

// ForwardedToWorker reports whether the manager answers a request of type t
// by forwarding it to the pipeline's worker (mute, resume, status,
// consume_result, chaos). Such a request is refused with an operation
// error once the pipeline is marked for removal; terminate is not (it is
// the removal).
func ForwardedToWorker(t string) bool {
	switch t {
	case TypeMute, TypeResume, TypeStatus, TypeConsumeResult, TypeChaos:
		return true
	}
	return false
}
