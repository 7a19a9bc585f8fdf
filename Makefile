# orderflow: see README.md. Every target runs on a fresh machine and starts what it needs.
.PHONY: build up down test bench drill soak status lint

build:
	go build -o bin/orderflow ./cmd/orderflow

up:
	deploy/local/stack.sh up

down:
	deploy/local/stack.sh down

status:
	@deploy/local/stack.sh status

test:
	deploy/local/test.sh

bench: build
	bench/run.sh

# The failure drill on the make-up stack with a three-node Kafka (a one-node stack is reshaped:
# its topics start again empty): DRILL_ORDERS orders (default 20000) under faults.
drill:
	ORDERFLOW_KAFKA_NODES=3 deploy/local/stack.sh up
	go run ./deploy/drill -root . -orders $${DRILL_ORDERS:-20000}

# The soak on the make-up stack: SOAK_RATE orders/s (default 100) while Kafka is stopped for
# SOAK_OUTAGE (default 10m), then the drill's invariants and the catch-up time (docs/DRILL.md).
soak: up
	go run ./deploy/drill -root . -soak-kafka-outage $${SOAK_OUTAGE:-10m} -rate $${SOAK_RATE:-100}

# gofmt, go vet and staticcheck (installed at a pinned version when missing).
lint:
	deploy/local/lint.sh --staticcheck
