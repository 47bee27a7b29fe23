// Package protocol is the stream-manager wire contract: length-prefixed JSON
// frames, the request and response types, the error vocabulary of the
// upstream inference stream manager, and a Go client.
//
// A frame is a 4-byte unsigned big-endian payload length followed by a UTF-8
// JSON object. The same framing runs between the manager and its workers over
// their stdin and stdout.
package protocol
