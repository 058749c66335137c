package memory_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
)

func ExampleNew() {
	s, err := memory.New(&memory.Options{MaxKeys: 100_000})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx := context.Background()
	// Two failed logins for alice, and a look at her lock marker: one
	// batch, one pass.
	ops := []backend.Op{
		backend.IncrOp("fail/alice", 1, 15*time.Minute),
		backend.IncrOp("fail/alice", 1, 15*time.Minute),
		backend.ExistsOp("lock/alice"),
	}
	res := make([]backend.Result, len(ops))
	if err := s.Do(ctx, ops, res); err != nil {
		log.Fatal(err)
	}
	fmt.Println("failures:", res[1].Value, "locked:", res[2].Found)

	for key, err := range s.Keys(ctx, "fail/") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("key:", key)
	}
	// Output:
	// failures: 2 locked: false
	// key: fail/alice
}
