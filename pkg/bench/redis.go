package bench

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// RedisMemory loads n members of size bytes into one Redis sorted set at
// addr (score = a due time in unix ms) with pipelined ZADDs over plain RESP,
// and writes Redis's memory figures (INFO memory, the server's RSS and,
// with save, the RDB file size) to out: the comparison in this package's
// README.md. Run it against a Redis started for the purpose.
func RedisMemory(addr string, n, size, batch int, key string, save bool, out io.Writer) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 1<<16)
	w := bufio.NewWriterSize(conn, 1<<20)
	call := func(args ...string) (string, error) {
		writeCommand(w, args)
		if err := w.Flush(); err != nil {
			return "", err
		}
		return readReply(r)
	}
	if _, err := call("DEL", key); err != nil {
		return err
	}
	before, err := call("INFO", "memory")
	if err != nil {
		return err
	}

	// Replies are read concurrently so the pipeline never stalls.
	commands := (n + batch - 1) / batch
	replies := make(chan error, 1)
	go func() {
		for range commands {
			if _, err := readReply(r); err != nil {
				replies <- err
				return
			}
		}
		replies <- nil
	}()
	// Filler from a random pool at a different offset per member: like a
	// real payload, it does not compress away in the RDB file.
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	pool := make([]byte, 1<<20+size)
	for i := range pool {
		pool[i] = letters[rng.IntN(len(letters))]
	}
	fill := max(size-12, 0)
	due := time.Now().Add(time.Hour).UnixMilli()
	start := time.Now()
	args := make([]string, 0, 2+2*batch)
	for i := 0; i < n; i += batch {
		args = append(args[:0], "ZADD", key)
		for j := i; j < min(i+batch, n); j++ {
			off := (j * 7919) % (1 << 20)
			member := fmt.Sprintf("m%011d", j) + string(pool[off:off+fill]) // size bytes, unique
			args = append(args, strconv.FormatInt(due+int64(j%86_400_000), 10), member[:min(len(member), size)])
		}
		writeCommand(w, args)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := <-replies; err != nil {
		return err
	}
	elapsed := time.Since(start)
	card, err := call("ZCARD", key)
	if err != nil {
		return err
	}
	after, err := call("INFO", "memory")
	if err != nil {
		return err
	}
	server, err := call("INFO", "server")
	if err != nil {
		return err
	}
	mb := func(info, field string) float64 {
		v, _ := strconv.ParseFloat(infoField(info, field), 64)
		return v / (1 << 20)
	}
	fmt.Fprintf(out, "loaded %d members of %d bytes in %.1fs (%.0f/s); ZCARD %s\n", n, size, elapsed.Seconds(), float64(n)/elapsed.Seconds(), card)
	fmt.Fprintf(out, "redis %s, pid %s\n", infoField(server, "redis_version"), infoField(server, "process_id"))
	fmt.Fprintf(out, "used_memory: %.1f MiB (empty: %.1f MiB), used_memory_rss: %.1f MiB, used_memory_peak: %.1f MiB\n",
		mb(after, "used_memory"), mb(before, "used_memory"), mb(after, "used_memory_rss"), mb(after, "used_memory_peak"))
	used, _ := strconv.ParseFloat(infoField(after, "used_memory"), 64)
	empty, _ := strconv.ParseFloat(infoField(before, "used_memory"), 64)
	fmt.Fprintf(out, "bytes per member: %.0f\n", (used-empty)/float64(n))
	if pid := infoField(server, "process_id"); pid != "" {
		if b, err := os.ReadFile("/proc/" + pid + "/status"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, "VmHWM") || strings.HasPrefix(line, "VmRSS") {
					fmt.Fprintln(out, strings.Join(strings.Fields(line), " "))
				}
			}
		}
	}
	if save {
		t := time.Now()
		if _, err := call("SAVE"); err != nil {
			return err
		}
		cfgDir, _ := call("CONFIG", "GET", "dir")
		cfgFile, _ := call("CONFIG", "GET", "dbfilename")
		path := lastLine(cfgDir) + "/" + lastLine(cfgFile)
		if st, err := os.Stat(path); err == nil {
			fmt.Fprintf(out, "RDB %s: %.1f MiB (SAVE took %.1fs)\n", path, float64(st.Size())/(1<<20), time.Since(t).Seconds())
		}
	}
	return nil
}

// writeCommand writes args as a RESP array of bulk strings.
func writeCommand(w *bufio.Writer, args []string) {
	w.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		w.WriteString("$" + strconv.Itoa(len(a)) + "\r\n")
		w.WriteString(a)
		w.WriteString("\r\n")
	}
}

// readReply reads one RESP reply; arrays are flattened to lines.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		var parts []string
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
