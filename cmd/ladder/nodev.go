//go:build nodev

package main

import (
	"context"
	"errors"
	"io"
)

func init() {
	register(command{name: "dev", summary: "run an embedded broker (not in this build)", order: 20, run: devCmd})
}

// devCmd in a build with the nodev tag (the production image): the embedded
// broker and everything it imports are left out of the binary.
func devCmd(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errors.New("this build has no embedded broker (built with -tags nodev); use a full build for `ladder dev`")
}
