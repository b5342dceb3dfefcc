package local

import (
	"bytes"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// admit checks a request that http.ReadRequest parsed as net/http's server
// checks it before calling a handler, in the same order, so that a request
// both refuse gets the same status. It returns 0 for a request to forward,
// or the status to refuse it with and why. head is the request head as the
// client sent it (it may go on past the head).
//
// Differences on purpose, all stricter: CONNECT (a tunnel, which the
// balancer does not make) and "PRI * HTTP/2.0" (h2c, which it does not
// speak) are refused.
func admit(req *http.Request, head []byte) (code int, why string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	host, hosts := req.Host, 1
	if req.URL.Host != "" || host == "" {
		// In absolute form the URL gives req.Host and the Host header is
		// dropped; an empty req.Host is an empty header or none. Only the
		// head tells.
		host, hosts = headerIn(head, "host")
	}
	if req.ProtoAtLeast(1, 1) && hosts == 0 {
		return http.StatusBadRequest, "missing required Host header"
	}
	if hosts == 1 && !httpguts.ValidHostHeader(host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	if e := req.Header.Get("Expect"); e != "" && !expectsContinue(req) {
		return http.StatusExpectationFailed, ""
	}
	// Stricter than net/http's server from here on, so after its checks.
	if req.Method == http.MethodConnect {
		return http.StatusMethodNotAllowed, "CONNECT is not supported"
	}
	return 0, ""
}

// headerIn returns the value of the last header named name (lower case) in
// a request head, and how many there are. Lines that continue the previous
// one (starting with a space or tab) are no header of their own.
func headerIn(head []byte, name string) (value string, n int) {
	_, rest, _ := bytes.Cut(head, []byte("\n")) // the request line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // the end of the head
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && len(k) == len(name) && bytes.EqualFold(k, []byte(name)) {
			value, n = string(bytes.TrimSpace(v)), n+1
		}
	}
	return value, n
}
