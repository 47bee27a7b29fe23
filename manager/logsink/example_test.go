package logsink_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/corral-dev/corral/manager/logsink"
)

// A logger over a Sink whose reader has gone: logging goes on, the lost
// lines are counted.
func Example() {
	r, w, _ := os.Pipe()
	r.Close() // the reader is gone
	defer w.Close()
	sink := logsink.New(w, 0)
	log := slog.New(slog.NewTextHandler(sink, nil))
	log.Info("request", "type", "status")
	log.Info("request", "type", "init")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = sink.Close(ctx)
	fmt.Println("lines lost:", sink.Stats().Lost())
	// Output: lines lost: 2
}
