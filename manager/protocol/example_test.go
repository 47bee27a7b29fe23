package protocol_test

import (
	"bytes"
	"fmt"

	"github.com/corral-dev/corral/manager/protocol"
)

func ExampleWriteFrame() {
	var buf bytes.Buffer
	_ = protocol.WriteFrame(&buf, []byte(`{"type":"list_pipelines"}`))
	fmt.Printf("header % x\n", buf.Bytes()[:4])
	body, _ := protocol.ReadFrame(&buf, 0)
	req, _ := protocol.ParseRequest(body)
	fmt.Println("type", req.Type)
	// Output:
	// header 00 00 00 19
	// type list_pipelines
}
