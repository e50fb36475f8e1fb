module github.com/topgun-go/topgun

go 1.26.0

ignore (
	./e2e/node_modules
	./js/node_modules
	./node_modules
	./react/node_modules
)

require (
	github.com/coder/websocket v1.8.15
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/hack-pad/go-indexeddb v0.3.2
	github.com/vmihailenco/msgpack/v5 v5.4.1
	go.etcd.io/bbolt v1.5.0
	golang.org/x/time v0.16.0
)

require (
	github.com/hack-pad/safejs v0.1.0 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
