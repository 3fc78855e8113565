//go:build race

package forward_test

// raceDetector is true when the tests run with -race.
const raceDetector = true
