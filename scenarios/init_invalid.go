package scenarios

import (
	"context"

	"github.com/corral-dev/corral/manager/protocol"
)

// MixInitInvalid is the Scenario.Mix key of an init the server must
// refuse: the target profile's init request without its required
// video_configuration section (upstream's model requires it, and Corral
// has no video to open without it). It is sent for no logical pipeline
// and recorded as an init (F protocol.TypeInit), so the checkers judge its
// failure like any failed init: a server that leaves the spawned worker
// listed shows a phantom pipeline to pipeline_model.
const MixInitInvalid = "init_invalid"

// invalidInitRemoves is the required section an init_invalid request
// lacks.
const invalidInitRemoves = "video_configuration"

// invalidInitField is the key of an init invoke's value that marks the
// payload as deliberately invalid; its value names what was removed.
const invalidInitField = "deliberately_invalid"

// invalidInitEntry turns a planned command drawn as MixInitInvalid into
// the init it sends: F protocol.TypeInit (so the profile's commands decide
// whether it applies), no logical pipeline, and Params saying what the
// request lacks (the plan file shows it).
func invalidInitEntry(e PlanEntry) PlanEntry {
	e.F, e.Target = protocol.TypeInit, 0
	e.Params = map[string]any{invalidInitField: invalidInitRemoves + " removed"}
	return e
}

// sendsInvalidInit reports whether plan entry e is an init_invalid.
func (e PlanEntry) sendsInvalidInit() bool {
	_, ok := e.Params[invalidInitField]
	return ok && e.Kind == KindCommand && e.F == protocol.TypeInit
}

// invalidInitFields is fields (the profile's init request) without the
// section init_invalid removes; fields itself is not changed.
func invalidInitFields(fields map[string]any) map[string]any {
	m := deepCopy(fields)
	if m == nil {
		m = map[string]any{}
	}
	delete(m, invalidInitRemoves)
	return m
}

// deliberatelyInvalid reports whether init invoke inv sent a payload the
// server must refuse (MixInitInvalid).
func deliberatelyInvalid(inv *Op) bool {
	_, ok := valueFields(inv.Value)[invalidInitField]
	return ok && inv.F == protocol.TypeInit
}

// sendInvalidInit sends one init_invalid request as process and records it
// as an init whose invoke value says what was removed. It is tied to no
// logical pipeline: the id a server answers with is never used.
func (r *runner) sendInvalidInit(ctx context.Context, process string) {
	_, _ = r.sendFields(ctx, process, protocol.TypeInit, 0, "", invalidInitFields(r.initFields),
		map[string]any{invalidInitField: invalidInitRemoves + " removed"})
}
