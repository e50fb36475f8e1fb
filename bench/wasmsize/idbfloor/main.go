//go:build js && wasm

// Command idbfloor is the size floor of a Go program that uses
// github.com/hack-pad/go-indexeddb the way idb/ must: open a database with
// an upgrade, one readwrite transaction with a put and a get.
package main

import (
	"context"
	"syscall/js"

	"github.com/hack-pad/go-indexeddb/idb"
)

func main() {
	ctx := context.Background()
	req, err := idb.Global().Open(ctx, "floor", 1, func(db *idb.Database, _, _ uint) error {
		_, err := db.CreateObjectStore("s", idb.ObjectStoreOptions{})
		return err
	})
	if err != nil {
		panic(err)
	}
	db, err := req.Await(ctx)
	if err != nil {
		panic(err)
	}
	tx, err := db.Transaction(idb.TransactionReadWrite, "s")
	if err != nil {
		panic(err)
	}
	st, err := tx.ObjectStore("s")
	if err != nil {
		panic(err)
	}
	if _, err := st.PutKey(js.ValueOf("k"), js.ValueOf(1)); err != nil {
		panic(err)
	}
	get, err := st.Get(js.ValueOf("k"))
	if err != nil {
		panic(err)
	}
	v, err := get.Await(ctx)
	if err != nil {
		panic(err)
	}
	js.Global().Get("console").Call("log", v)
}
