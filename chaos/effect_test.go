package chaos_test

import (
	"testing"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

// TestCatalogueEffects pins each fault's effect predicates: checkers decide
// by them, so a change here changes what the harness judges.
func TestCatalogueEffects(t *testing.T) {
	type effects struct{ kills, exits, hangs, slows, corrupts, abandons, inWorker, endsManager, stalls bool }
	want := map[string]effects{
		protocol.FaultCrash:            {kills: true},
		protocol.FaultWorkerCrash:      {exits: true, inWorker: true},
		protocol.FaultHangProcess:      {hangs: true},
		protocol.FaultHangQueue:        {hangs: true, inWorker: true},
		protocol.FaultSlowProbe:        {slows: true, inWorker: true},
		protocol.FaultStaleResponses:   {corrupts: true, inWorker: true},
		protocol.FaultGarbageOutput:    {corrupts: true, inWorker: true},
		protocol.FaultIgnoreSigterm:    {inWorker: true},
		protocol.FaultSlowStart:        {inWorker: true},
		protocol.FaultSpawnGrandchild:  {inWorker: true},
		protocol.FaultFreezeSource:     {inWorker: true, stalls: true},
		protocol.FaultClientStall:      {},
		protocol.FaultClientDisconnect: {},
		protocol.FaultOversizedFrame:   {},
		protocol.FaultMalformedFrame:   {},
		protocol.FaultClientBurst:      {},
		protocol.FaultInitStorm:        {},
		protocol.FaultAbandonRequest:   {abandons: true},
		protocol.FaultManagerSigterm:   {endsManager: true},
		protocol.FaultManagerSigkill:   {endsManager: true},
	}
	cat := chaos.Catalogue()
	if len(cat) != len(want) {
		t.Errorf("catalogue has %d faults, the table %d: pin the new ones", len(cat), len(want))
	}
	for _, f := range cat {
		w, ok := want[f.Name()]
		if !ok {
			t.Errorf("fault %s has no pinned effects", f.Name())
			continue
		}
		stalling, _ := f.(chaos.Stalling)
		got := effects{f.Kills(), f.Exits(), f.Hangs(), f.SlowsProbes(), f.CorruptsReplies(), f.AbandonsConnections(), f.InWorker(), f.EndsManager(),
			stalling != nil && stalling.StallsSources()}
		if got != w {
			t.Errorf("%s: effects %+v, want %+v", f.Name(), got, w)
		}
	}
}
