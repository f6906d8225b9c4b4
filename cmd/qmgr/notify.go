package main

import (
	"errors"

	"postern/internal/queue"
)

type notifyKind int

const (
	kindFailure notifyKind = iota
	kindDelay
	kindSuccess
)

// notify queues a delivery status notification to the sender.
func (q *qmgr) notify(id queue.ID, qf *queue.File, kind notifyKind, idx []int, results []result) error {
	return errors.New("delivery status notifications are not built yet")
}
