// Package realkafka runs Apache Kafka brokers for tests and `make kafka`:
// KRaft nodes that are broker and controller at once, started straight from
// the jars of the release pom.xml pins (fetched once with Maven into a cache
// outside the tree), on free loopback ports, each with its own directory and
// log, stopped and removed by Stop.
//
// Each node has three listeners: CLIENT (what clients use; plain, SASL
// and/or TLS as configured), INTERNAL (plain, between brokers, and what this
// package uses to see that a node is ready) and CONTROLLER.
package realkafka

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
)

// Config describes a cluster.
type Config struct {
	// Nodes is the number of nodes, each broker and controller (default 1).
	// With 3 or more, topics default to replication factor 3 and
	// min.insync.replicas=2, as in production.
	Nodes int
	// BrokerConfig adds to or overrides the server.properties of every node.
	BrokerConfig map[string]string
	// Users turn SASL on for the CLIENT listener (PLAIN, SCRAM-SHA-256 and
	// SCRAM-SHA-512 enabled): PLAIN users are listed in the listener's JAAS
	// configuration, SCRAM users are created when the storage is formatted.
	Users []User
	// TLS turns TLS on for the CLIENT listener.
	TLS *TLS
	// Authorizer turns ACLs on (KRaft's StandardAuthorizer). The INTERNAL
	// and CONTROLLER listeners' principal (User:ANONYMOUS) and SuperUsers are
	// super users; everyone else needs ACLs.
	Authorizer bool
	// SuperUsers are principals like "User:admin" allowed everything.
	SuperUsers []string
	// Heap is the JVM's maximum heap (-Xmx), default "512m".
	Heap string
	// JVMOptions are added to the java command line of each node.
	JVMOptions []string
	// Dir is where the cluster's directory is made (default os.TempDir()).
	Dir string
	// Jars is the directory of Kafka's jars (default: Jars, fetching them).
	Jars string
	// Proxied, when set, adds a plain listener PROXIED to every node that
	// tells clients to connect to Proxied(node id) instead of itself: the
	// address of a TCP proxy in front of Node.ProxiedAddr, for tests that
	// cut or slow the connection.
	Proxied func(node int) string
}

// User is a SASL login.
type User struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Name      string
	Password  string
}

// TLS is the CLIENT listener's certificate, as PEM files.
type TLS struct {
	CertFile, KeyFile string // the broker's certificate and its key (PKCS#1, SEC 1 or PKCS#8)
	CAFile            string // the CA that client certificates must chain to
	ClientAuth        bool   // require a client certificate
}

// Cluster is a running set of nodes.
type Cluster struct {
	cfg   Config
	dir   string
	jars  string
	id    string
	nodes []*Node
}

// Node is one broker-and-controller process.
type Node struct {
	ID int
	// Addr is the CLIENT listener, host:port.
	Addr string
	// Internal is the plain INTERNAL listener, host:port.
	Internal string
	// ProxiedAddr is where the PROXIED listener listens (with Config.Proxied).
	ProxiedAddr string
	controller  string
	dir         string
	// LogFile receives the node's output.
	LogFile string

	c    *Cluster
	mu   sync.Mutex
	proc *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start formats and starts cfg.Nodes nodes and waits until every one is
// ready: each sees all of them as live brokers. ctx bounds the whole start.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1
	}
	if cfg.Heap == "" {
		cfg.Heap = "512m"
	}
	if cfg.Dir == "" {
		cfg.Dir = os.TempDir()
	}
	for _, u := range cfg.Users {
		if !slices.Contains([]string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, u.Mechanism) || u.Name == "" || u.Password == "" {
			return nil, fmt.Errorf("kafka SASL user %q: want a mechanism of PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, a name and a password", u.Name)
		}
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("starting Apache Kafka needs java on PATH: %w", err)
	}
	sweep(cfg.Dir)
	jars := cfg.Jars
	if jars == "" {
		var err error
		if jars, err = Jars(ctx); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(cfg.Dir, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("creating the cluster directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &Cluster{cfg: cfg, dir: dir, jars: jars, id: newClusterID()}
	if err := c.start(ctx); err != nil {
		logs := c.LogTails(40)
		c.Stop()
		return nil, fmt.Errorf("%w\n%s", err, logs)
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	perNode := 3
	if c.cfg.Proxied != nil {
		perNode++
	}
	ports, err := freePorts(perNode * c.cfg.Nodes)
	if err != nil {
		return err
	}
	addr := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
	var voters []string
	for i := range c.cfg.Nodes {
		id := i + 1
		n := &Node{ID: id, c: c, dir: filepath.Join(c.dir, "node-"+strconv.Itoa(id)),
			Addr: addr(perNode * i), Internal: addr(perNode*i + 1), controller: addr(perNode*i + 2)}
		if c.cfg.Proxied != nil {
			n.ProxiedAddr = addr(perNode*i + 3)
		}
		n.LogFile = filepath.Join(n.dir, "server.log")
		c.nodes = append(c.nodes, n)
		voters = append(voters, fmt.Sprintf("%d@%s", id, n.controller))
	}
	for _, n := range c.nodes {
		if err := n.writeConfig(strings.Join(voters, ",")); err != nil {
			return err
		}
	}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = n.format(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, n := range c.nodes {
		if err := n.launch(); err != nil {
			return err
		}
	}
	return c.waitReady(ctx, c.nodes...)
}

// Nodes are the cluster's nodes, by id from 1.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node is the node with this id.
func (c *Cluster) Node(id int) *Node { return c.nodes[id-1] }

// Addrs are the CLIENT listeners of all nodes.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr
	}
	return out
}

// Bootstrap is Addrs joined by commas, as LADDER_BROKERS and kcat -b take it.
func (c *Cluster) Bootstrap() string { return strings.Join(c.Addrs(), ",") }

// Dir is the cluster's directory: each node's data, configuration and log.
func (c *Cluster) Dir() string { return c.dir }

// Stop stops every node (SIGTERM, then SIGKILL after 20 s) and removes the
// cluster's directory. A node killed so is not an error: the nodes stop at
// once, and the last ones' controlled shutdown can wait for a controller
// quorum that the others took away (seen under load), while the data it
// would have left clean is removed anyway.
func (c *Cluster) Stop() error {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() { _ = n.Stop(20 * time.Second) })
	}
	wg.Wait()
	return os.RemoveAll(c.dir)
}

// WriteLogs writes every node's whole log to w.
func (c *Cluster) WriteLogs(w io.Writer) {
	for _, n := range c.nodes {
		if data, err := os.ReadFile(n.LogFile); err == nil {
			w.Write(data)
		}
	}
}

// LogTails is the last lines of every node's log, each under a heading.
func (c *Cluster) LogTails(lines int) string {
	var b strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "--- kafka node %d (%s), last %d lines of %s ---\n%s", n.ID, n.Addr, lines, n.LogFile, n.Tail(lines))
	}
	return b.String()
}

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return false
	}
	select {
	case <-n.proc.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to the node and waits for it to die: a crash, no
// controlled shutdown.
func (n *Node) Kill() error {
	p := n.current()
	if p == nil {
		return fmt.Errorf("kafka node %d is not running", n.ID)
	}
	p.cmd.Process.Kill()
	<-p.done
	return nil
}

// Stop shuts the node down cleanly (SIGTERM: controlled shutdown, leaders
// moved away first) and waits for it; after timeout it is killed.
func (n *Node) Stop(timeout time.Duration) error {
	p := n.current()
	if p == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("kafka node %d did not stop within %s of SIGTERM: killed", n.ID, timeout)
	}
}

// Restart starts a stopped or killed node again with its data, ports and
// configuration, and waits until every running node sees it as a broker.
func (n *Node) Restart(ctx context.Context) error {
	if n.Running() {
		return fmt.Errorf("kafka node %d is running", n.ID)
	}
	if err := n.launch(); err != nil {
		return err
	}
	var live []*Node
	for _, m := range n.c.nodes {
		if m.Running() {
			live = append(live, m)
		}
	}
	if err := n.c.waitReady(ctx, live...); err != nil {
		return fmt.Errorf("%w\n%s", err, n.Tail(40))
	}
	return nil
}

// Pid is the node's process id (0 when stopped).
func (n *Node) Pid() int {
	if p := n.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return nil
	}
	select {
	case <-n.proc.done:
		return nil
	default:
		return n.proc
	}
}

// Tail is the last lines of the node's log.
func (n *Node) Tail(lines int) string {
	b, err := os.ReadFile(n.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)\n", err)
	}
	return TailLines(b, lines)
}

// TailLines is the last n lines of b.
func TailLines(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	i := len(b)
	for range n {
		j := bytes.LastIndexByte(b[:i], '\n')
		if j < 0 {
			i = 0
			break
		}
		i = j
	}
	return strings.TrimLeft(string(b[i:]), "\n") + "\n"
}

// java is the command line that runs class main of Kafka with args.
func (n *Node) java(main string, args ...string) []string {
	cmd := []string{"java", "-Xmx" + n.c.cfg.Heap, "-Xms64m", "-XX:+UseSerialGC", "-Xss512k",
		"-Djava.awt.headless=true", "-Dlog4j2.configurationFile=" + filepath.Join(n.dir, "log4j2.properties")}
	cmd = append(cmd, n.c.cfg.JVMOptions...)
	return append(append(cmd, "-cp", filepath.Join(n.c.jars, "*"), main), args...)
}

func (n *Node) format(ctx context.Context) error {
	args := []string{"format", "--ignore-formatted", "-t", n.c.id, "-c", filepath.Join(n.dir, "server.properties")}
	for _, u := range n.c.cfg.Users {
		if strings.HasPrefix(u.Mechanism, "SCRAM-") {
			args = append(args, "--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", u.Mechanism, u.Name, u.Password))
		}
	}
	argv := n.java("kafka.tools.StorageTool", args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("formatting the storage of kafka node %d: %w\n%s", n.ID, err, TailLines(out, 20))
	}
	return nil
}

// launch starts the node's JVM. The goroutine that starts it keeps its OS
// thread until the JVM ends, so the kernel's parent-death signal fires only
// when the test binary itself dies.
func (n *Node) launch() error {
	argv := n.java("kafka.Kafka", filepath.Join(n.dir, "server.properties"))
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p := &process{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	p.cmd.Dir = n.dir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(p.cmd.SysProcAttr)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer logf.Close()
		if err := p.cmd.Start(); err != nil {
			started <- err
			close(p.done)
			return
		}
		os.WriteFile(filepath.Join(n.dir, "pid"), []byte(strconv.Itoa(p.cmd.Process.Pid)), 0o644)
		started <- nil
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting kafka node %d: %w", n.ID, err)
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	return nil
}

// waitReady waits until each of nodes lists every one of nodes as a live
// broker in its metadata.
func (c *Cluster) waitReady(ctx context.Context, nodes ...*Node) error {
	want := make([]int32, 0, len(nodes))
	for _, n := range nodes {
		want = append(want, int32(n.ID))
	}
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Net.DialTimeout = time.Second
	sc.Net.ReadTimeout = 5 * time.Second
	for _, n := range nodes {
		var last error
		for {
			if !n.Running() {
				return fmt.Errorf("kafka node %d exited while starting (see its log)", n.ID)
			}
			ids, err := liveBrokers(n.Internal, sc)
			if err == nil && containsAll(ids, want) {
				break
			}
			if err == nil {
				err = fmt.Errorf("sees brokers %v, waiting for %v", ids, want)
			}
			last = err
			select {
			case <-ctx.Done():
				return fmt.Errorf("kafka node %d not ready: %w (last: %v)", n.ID, ctx.Err(), last)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func liveBrokers(addr string, sc *sarama.Config) ([]int32, error) {
	b := sarama.NewBroker(addr)
	if err := b.Open(sc); err != nil {
		return nil, err
	}
	defer b.Close()
	resp, err := b.GetMetadata(&sarama.MetadataRequest{Version: 5})
	if err != nil {
		return nil, err
	}
	ids := make([]int32, 0, len(resp.Brokers))
	for _, br := range resp.Brokers {
		ids = append(ids, br.ID())
	}
	return ids, nil
}

func containsAll(have, want []int32) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// defaults are the settings of every node, before Config.BrokerConfig: fast
// to start and to join groups, and topics made only by those who mean to.
func (c *Cluster) defaults() map[string]string {
	rf, isr := "1", "1"
	if c.cfg.Nodes >= 3 {
		rf, isr = "3", "2"
	}
	return map[string]string{
		"process.roles":                            "broker,controller",
		"controller.listener.names":                "CONTROLLER",
		"inter.broker.listener.name":               "INTERNAL",
		"auto.create.topics.enable":                "false",
		"default.replication.factor":               rf,
		"min.insync.replicas":                      isr,
		"offsets.topic.replication.factor":         rf,
		"offsets.topic.num.partitions":             "10",
		"transaction.state.log.replication.factor": rf,
		"transaction.state.log.min.isr":            isr,
		"transaction.state.log.num.partitions":     "10",
		// Abort timed-out transactions within a second of their timeout
		// (default: checked every 10 s), as tests of short timeouts expect.
		"transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
		"group.initial.rebalance.delay.ms":                            "0",
		"log.initial.task.delay.ms":                                   "1000",
		"num.partitions":                                              "1",
		"num.network.threads":                                         "2",
		"num.io.threads":                                              "4",
		"num.recovery.threads.per.data.dir":                           "1",
		"log.segment.bytes":                                           strconv.Itoa(64 << 20),
	}
}

func (n *Node) writeConfig(voters string) error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	cfg := n.c.cfg
	props := n.c.defaults()
	clientProto := "PLAINTEXT"
	switch {
	case len(cfg.Users) > 0 && cfg.TLS != nil:
		clientProto = "SASL_SSL"
	case len(cfg.Users) > 0:
		clientProto = "SASL_PLAINTEXT"
	case cfg.TLS != nil:
		clientProto = "SSL"
	}
	listeners := fmt.Sprintf("CLIENT://%s,INTERNAL://%s,CONTROLLER://%s", n.Addr, n.Internal, n.controller)
	advertised := fmt.Sprintf("CLIENT://%s,INTERNAL://%s", n.Addr, n.Internal)
	protocols := "CLIENT:" + clientProto + ",INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
	if cfg.Proxied != nil {
		listeners += ",PROXIED://" + n.ProxiedAddr
		advertised += ",PROXIED://" + cfg.Proxied(n.ID)
		protocols += ",PROXIED:PLAINTEXT"
	}
	maps.Copy(props, map[string]string{
		"node.id":                        strconv.Itoa(n.ID),
		"controller.quorum.voters":       voters,
		"listeners":                      listeners,
		"advertised.listeners":           advertised,
		"listener.security.protocol.map": protocols,
		"log.dirs":                       filepath.Join(n.dir, "data"),
	})
	if len(cfg.Users) > 0 {
		props["sasl.enabled.mechanisms"] = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
		var plain strings.Builder
		plain.WriteString("org.apache.kafka.common.security.plain.PlainLoginModule required")
		for _, u := range cfg.Users {
			if u.Mechanism == "PLAIN" {
				fmt.Fprintf(&plain, " user_%s=%q", u.Name, u.Password)
			}
		}
		plain.WriteString(";")
		props["listener.name.client.plain.sasl.jaas.config"] = plain.String()
		for _, m := range []string{"scram-sha-256", "scram-sha-512"} {
			props["listener.name.client."+m+".sasl.jaas.config"] = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
		}
	}
	if cfg.TLS != nil {
		keystore, err := writeKeystore(n.dir, cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return err
		}
		props["listener.name.client.ssl.keystore.type"] = "PEM"
		props["listener.name.client.ssl.keystore.location"] = keystore
		if cfg.TLS.CAFile != "" {
			props["listener.name.client.ssl.truststore.type"] = "PEM"
			props["listener.name.client.ssl.truststore.location"] = cfg.TLS.CAFile
		}
		if cfg.TLS.ClientAuth {
			props["listener.name.client.ssl.client.auth"] = "required"
		}
	}
	if cfg.Authorizer {
		props["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
		props["super.users"] = strings.Join(append([]string{"User:ANONYMOUS"}, cfg.SuperUsers...), ";")
	}
	maps.Copy(props, cfg.BrokerConfig)
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(&b, "%s=%s\n", k, escapeProperty(props[k]))
	}
	if err := os.WriteFile(filepath.Join(n.dir, "server.properties"), []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.dir, "log4j2.properties"), []byte(log4j2), 0o644)
}

// escapeProperty escapes a value for a Java properties file.
func escapeProperty(v string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(v)
}

// log4j2 sends the broker's log to standard output (the node's log file),
// INFO and up, without the configuration dumps of every client and server
// start.
const log4j2 = `rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.config.name=org.apache.kafka.common.config.AbstractConfig
logger.config.level=WARN
logger.appinfo.name=org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level=WARN
`

// freePorts reserves n distinct free loopback ports and releases them. It
// picks them below the kernel's ephemeral range when it can: a port from
// that range, freed by a node that was stopped or killed, may be taken by
// any outgoing connection before the node starts again on it.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	lo, hi := 10000, ephemeralStart()
	for tries := 0; len(ports) < n && hi-lo > 1000 && tries < 50*n; tries++ {
		port := lo + mrand.IntN(hi-lo)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, port)
	}
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ephemeralStart is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range), 0 when unknown.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	start, _ := strconv.Atoi(f[0])
	return start
}

// newClusterID is a random KRaft cluster id: 16 bytes, base64url, unpadded,
// never starting with '-' (as Kafka's Uuid.randomUuid): StorageTool would
// take "-t -xyz..." for an option and refuse to format (one start in 64).
func newClusterID() string {
	for {
		var b [16]byte
		rand.Read(b[:])
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}

const (
	dirPrefix = "ladder-kafka-"
	ownerFile = "owner.pid"
)

// sweep removes the cluster directories under dir whose owning process is
// gone (a test binary killed before it could Stop), killing a node process
// left running there: one whose command line names that directory.
func sweep(dir string) {
	entries, _ := filepath.Glob(filepath.Join(dir, dirPrefix+"*"))
	for _, d := range entries {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || alive(owner) {
			continue
		}
		pids, _ := filepath.Glob(filepath.Join(d, "node-*", "pid"))
		for _, pf := range pids {
			b, _ := os.ReadFile(pf)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && strings.Contains(commandLine(pid), d) {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
		os.RemoveAll(d)
	}
}

// Grep is the lines of the node's log that contain any of words.
func (n *Node) Grep(words ...string) []string {
	f, err := os.Open(n.LogFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		for _, w := range words {
			if strings.Contains(sc.Text(), w) {
				out = append(out, sc.Text())
				break
			}
		}
	}
	return out
}
