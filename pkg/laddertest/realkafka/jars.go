package realkafka

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
)

// Version is the Apache Kafka release pom.xml pins.
const Version = "4.4.0"

// pom is the Maven description of the broker and its runtime dependencies.
//
//go:embed pom.xml
var pom []byte

// complete marks a cache directory whose copy finished.
const complete = ".complete"

// CacheDir is where Jars keeps the broker's jars:
// $XDG_CACHE_HOME/ladder/kafka-<Version>, else ~/.cache/ladder/kafka-<Version>.
func CacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache directory (set XDG_CACHE_HOME): %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "ladder", "kafka-"+Version), nil
}

// Missing names what this machine lacks to run a real broker ("" when
// nothing): java always, mvn unless the jars are already in the cache.
func Missing() string {
	var missing []string
	if _, err := exec.LookPath("java"); err != nil {
		missing = append(missing, "java (a JDK or JRE 17+)")
	}
	if dir, err := CacheDir(); err != nil || !cached(dir) {
		if _, err := exec.LookPath("mvn"); err != nil {
			missing = append(missing, "mvn (Maven, to fetch Apache Kafka "+Version+" once)")
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprint(missing)
}

func cached(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, complete))
	return err == nil
}

// Jars returns the directory holding Apache Kafka's jars, copying them from
// Maven Central into CacheDir the first time (about 45 MB, 10-20 s). Test
// binaries that start at once take turns on a lock file; the copy is made
// in a scratch directory and renamed into place, so a reader never sees half.
func Jars(ctx context.Context) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	if cached(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("creating the Kafka cache directory: %w", err)
	}
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return "", fmt.Errorf("locking the Kafka cache directory: %w", err)
	}
	defer unlock()
	if cached(dir) { // another process copied it while this one waited
		return dir, nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return "", fmt.Errorf("fetching Apache Kafka %s needs Maven (mvn) on PATH: %w", Version, err)
	}
	scratch, err := os.MkdirTemp(filepath.Dir(dir), "kafka-"+Version+".partial-")
	if err != nil {
		return "", fmt.Errorf("creating a scratch directory for Kafka's jars: %w", err)
	}
	defer os.RemoveAll(scratch)
	pomFile := filepath.Join(scratch, "pom.xml")
	if err := os.WriteFile(pomFile, pom, 0o644); err != nil {
		return "", err
	}
	jars := filepath.Join(scratch, "jars")
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-Dstyle.color=never", "-f", pomFile,
		"dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+jars)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("fetching Apache Kafka %s with Maven (%s): %w\n%s", Version, cmd, err, out.String())
	}
	if err := os.WriteFile(filepath.Join(jars, complete), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil { // an unfinished copy of an older run
		return "", err
	}
	if err := os.Rename(jars, dir); err != nil {
		return "", fmt.Errorf("moving Kafka's jars into %s: %w", dir, err)
	}
	return dir, nil
}

var pomVersion = regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`)

// PomVersion is the Kafka version pom.xml names.
func PomVersion() (string, error) {
	m := pomVersion.FindSubmatch(pom)
	if m == nil {
		return "", errors.New("pom.xml has no <kafka.version>")
	}
	return string(m[1]), nil
}
