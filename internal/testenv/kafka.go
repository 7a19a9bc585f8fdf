package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow/internal/tcpproxy"
)

// KafkaLibsVar names a directory holding the Kafka broker's jars, for tests that start a
// cluster of their own; by default they are the ones deploy/local/stack.sh resolved into
// .local/kafka/libs of the checkout (ORDERFLOW_ROOT, or the module's root).
const KafkaLibsVar = "ORDERFLOW_KAFKA_LIBS"

// KafkaOptions shape a private cluster.
type KafkaOptions struct {
	// Nodes is the number of combined broker/controller nodes: 1 or 3.
	Nodes int
	// Proxied puts a tcpproxy in front of every broker's client listener and advertises the
	// proxy's address, so every client connection, the bootstrap one and those to partition
	// leaders alike, passes through a path the test can cut or silence (Proxy). Brokers talk
	// to each other on a listener of their own, outside the proxies.
	Proxied bool
}

// KafkaCluster is a private KRaft cluster of one test, from the same jars as the local stack,
// with small heaps. It is killed and deleted when the test ends.
type KafkaCluster struct {
	tb      testing.TB
	dir     string
	libs    string
	log4j   string
	nodes   []*kafkaNode
	brokers []string
}

type kafkaNode struct {
	id     int
	conf   string
	client string // the advertised client address
	listen string // the client listener itself
	proxy  *tcpproxy.Proxy

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartKafka starts a private cluster and waits until every broker is registered.
func StartKafka(tb testing.TB, opts KafkaOptions) *KafkaCluster {
	tb.Helper()
	if opts.Nodes != 1 && opts.Nodes != 3 {
		tb.Fatalf("StartKafka: %d nodes, want 1 or 3", opts.Nodes)
	}
	root := repoRoot()
	libs := os.Getenv(KafkaLibsVar)
	if libs == "" {
		libs = filepath.Join(root, ".local", "kafka", "libs")
	}
	if m, _ := filepath.Glob(filepath.Join(libs, "kafka_*.jar")); len(m) == 0 {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("no Kafka jars in %s: run deploy/local/stack.sh infra first, or set %s", libs, KafkaLibsVar)
		}
		tb.Skipf("no Kafka jars in %s: run 'make test' (which resolves them), or set %s", libs, KafkaLibsVar)
	}
	if _, err := exec.LookPath("java"); err != nil {
		tb.Skip("java is not installed")
	}
	dir, err := os.MkdirTemp("", "orderflow-test-kafka-")
	if err != nil {
		tb.Fatal(err)
	}
	c := &KafkaCluster{tb: tb, dir: dir, libs: libs, log4j: filepath.Join(root, "deploy", "local", "kafka-log4j2.properties")}
	tb.Cleanup(func() {
		for _, n := range c.nodes {
			c.kill(n)
		}
		if tb.Failed() {
			for _, n := range c.nodes {
				if b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d.log", n.id))); err == nil {
					tb.Logf("kafka node %d log (tail):\n%s", n.id, tail(b, 3000))
				}
			}
		}
		_ = os.RemoveAll(dir)
	})

	type ports struct{ client, internal, controller int }
	ps := make([]ports, opts.Nodes)
	var voters []string
	for i := range ps {
		ps[i] = ports{freePort(tb), freePort(tb), freePort(tb)}
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", i+1, ps[i].controller))
	}
	rf, minISR := opts.Nodes, 1
	if opts.Nodes == 3 {
		minISR = 2
	}
	clusterID := kafkaUUID()
	var wg sync.WaitGroup
	errs := make(chan error, opts.Nodes)
	for i, p := range ps {
		n := &kafkaNode{id: i + 1, client: fmt.Sprintf("127.0.0.1:%d", p.client)}
		n.listen = n.client
		if opts.Proxied {
			n.proxy = tcpproxy.Start(tb, n.client)
			n.client = n.proxy.Addr()
		}
		n.conf = filepath.Join(dir, fmt.Sprintf("node%d.properties", n.id))
		conf := fmt.Sprintf(`process.roles=broker,controller
node.id=%d
controller.quorum.voters=%s
listeners=CLIENT://127.0.0.1:%d,INTERNAL://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d
advertised.listeners=CLIENT://%s,INTERNAL://127.0.0.1:%d
listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
log.dirs=%s
num.partitions=6
default.replication.factor=%d
min.insync.replicas=%d
auto.create.topics.enable=false
offsets.topic.replication.factor=%d
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=%d
transaction.state.log.min.isr=%d
share.coordinator.state.topic.replication.factor=%d
share.coordinator.state.topic.min.isr=%d
group.initial.rebalance.delay.ms=0
unclean.leader.election.enable=false
`, n.id, strings.Join(voters, ","), p.client, p.internal, p.controller, n.client, p.internal,
			filepath.Join(dir, fmt.Sprintf("data%d", n.id)), rf, minISR, rf, rf, minISR, rf, minISR)
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			tb.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
		c.brokers = append(c.brokers, n.client)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.java("kafka.tools.StorageTool", "format", "-t", clusterID, "-c", n.conf).CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("formatting node %d: %v\n%s", n.id, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	for _, n := range c.nodes {
		c.Start(n.id)
	}
	c.WaitBrokers(opts.Nodes, 3*time.Minute)
	return c
}

// Brokers are the client addresses (the proxies' with Proxied).
func (c *KafkaCluster) Brokers() []string { return c.brokers }

// Proxy is the proxy in front of node id's client listener (nil unless Proxied).
func (c *KafkaCluster) Proxy(id int) *tcpproxy.Proxy { return c.nodes[id-1].proxy }

// DirectDial dials node id's client listener whatever address it is asked for, bypassing its
// proxy: a test writes through it while the clients' path is broken.
func (c *KafkaCluster) DirectDial(id int) func(ctx context.Context, network, address string) (net.Conn, error) {
	addr := c.nodes[id-1].listen
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// WaitNode waits until node id answers on its own client listener.
func (c *KafkaCluster) WaitNode(id int, timeout time.Duration) {
	c.tb.Helper()
	addr := c.nodes[id-1].listen
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := metadata(ctx, addr, nil)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("kafka node %d does not answer within %s: %v", id, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *KafkaCluster) java(args ...string) *exec.Cmd {
	jopts := []string{"-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + c.log4j, "-cp", filepath.Join(c.libs, "*")}
	return exec.Command("java", append(jopts, args...)...)
}

// Start starts node id (again, after Kill).
func (c *KafkaCluster) Start(id int) {
	c.tb.Helper()
	n := c.nodes[id-1]
	logf, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.tb.Fatal(err)
	}
	cmd := c.java("kafka.Kafka", n.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.tb.Fatalf("starting kafka node %d: %v", id, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
}

// Kill kills node id with SIGKILL and waits until it is gone.
func (c *KafkaCluster) Kill(id int) { c.kill(c.nodes[id-1]) }

func (c *KafkaCluster) kill(n *kafkaNode) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// WaitBrokers waits until the cluster's metadata lists want brokers.
func (c *KafkaCluster) WaitBrokers(want int, timeout time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		for _, b := range c.brokers {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			md, err := metadata(ctx, b, nil)
			cancel()
			if err == nil && len(md.Brokers) == want {
				return
			}
			if err != nil {
				last = err.Error()
			} else {
				last = fmt.Sprintf("%d brokers", len(md.Brokers))
			}
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("kafka cluster: %d brokers not up within %s (last: %s)", want, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Leaders returns the leader's node id of each partition of topic, as the cluster says now.
func (c *KafkaCluster) Leaders(ctx context.Context, topic string) (map[int]int, error) {
	var lastErr error
	for _, b := range c.brokers {
		md, err := metadata(ctx, b, []string{topic})
		if err != nil {
			lastErr = err
			continue
		}
		out := map[int]int{}
		for _, t := range md.Topics {
			if t.Error != nil {
				return nil, t.Error
			}
			for _, p := range t.Partitions {
				out[p.ID] = p.Leader.ID
			}
		}
		return out, nil
	}
	return nil, lastErr
}

// metadata asks broker for the cluster's metadata over a transport of its own: kafka-go's
// shared transport would answer from its cache.
func metadata(ctx context.Context, broker string, topics []string) (*kafkago.MetadataResponse, error) {
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	return (&kafkago.Client{Addr: kafkago.TCP(broker), Timeout: 5 * time.Second, Transport: tr}).
		Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
}

// kafkaUUID is a random Kafka Uuid in its string form (URL-safe base64 of 16 bytes), as a
// KRaft cluster id.
func kafkaUUID() string {
	for {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		// Like Kafka's own Uuid.randomUuid: one starting with '-' would read as a flag.
		if s := base64.RawURLEncoding.EncodeToString(b); s[0] != '-' {
			return s
		}
	}
}

// repoRoot is ORDERFLOW_ROOT, or the directory of the go.mod above the working directory.
func repoRoot() string {
	if r := os.Getenv("ORDERFLOW_ROOT"); r != "" {
		return r
	}
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if f, err := os.Open(filepath.Join(d, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			isOurs := sc.Scan() && strings.TrimSpace(sc.Text()) == "module orderflow"
			f.Close()
			if isOurs {
				return d
			}
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
