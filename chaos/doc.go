// Package chaos is the harness's nemesis: faults at the process, worker,
// client and manager level, each with an inject and a heal, and seeded
// weighted schedules (with "swarm" selection of the enabled faults).
//
// # Faults
//
// Catalogue lists every fault; Levels groups their names by level.
//
//   - process: crash (SIGKILL the worker's process group) and hang_process
//     (SIGSTOP, healed by SIGCONT). The worker's pid and pgid come from
//     Target.FindWorker when set (a foreign server without inspect: the
//     harness maps pipelines to the processes that appeared around their
//     init), else from the manager's inspect command. Neither available
//     means the fault cannot be aimed (ErrPipelineNotFound); it never
//     guesses. A process group shared with the manager or with this
//     process is never signalled as a group; only the worker's pid is.
//   - worker: the manager's chaos command (managers started with chaos):
//     hang_queue, slow_probe, stale_responses, garbage_output,
//     ignore_sigterm, slow_start, spawn_grandchild, and worker_crash (the
//     worker's own crash, with exit_code). Faults that stay armed are
//     healed with the worker's heal command, which clears every armed
//     fault of that worker; hang_queue ends by its own timer
//     (duration_seconds = Spec.For) because a hung queue cannot read a
//     heal.
//   - client: misbehaving clients on the wire (client_stall,
//     client_disconnect, oversized_frame, malformed_frame, client_burst),
//     and the limit pushers: init_storm (Params["inits"] concurrent inits
//     of Params["video"]; its heal terminates the pipelines it created)
//     and abandon_request (Params["requests"] complete requests of
//     Params["command"] to the pipeline, then a reset of each connection).
//     Inject starts them in a goroutine that Heal waits for (and the
//     Inject context cancels): pass the run's context to Inject, not a
//     per-call timeout. Every socket has a deadline, and only loopback
//     addresses are attacked.
//   - manager: manager_sigterm and manager_sigkill, through Target.Signal
//     when set, else kill(2) on Target.ManagerPid (never this process).
//
// Observed returns what a fault saw (pids and signals, answers of the
// server) for the history; for client faults it is complete once Heal
// returned ("done": true).
//
// # Schedules
//
// PlanFaults draws a deterministic schedule from a weighted menu and a
// seed; SwarmPick lets a seed choose which faults of a menu are enabled.
// Both use math/rand/v2's PCG seeded from the seed, never a global source.
package chaos
