package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

func init() {
	register(command{name: "config", summary: "print the effective configuration, or the variable table (--usage)", order: 90, run: configCmd})
}

// usageTable is the Markdown table of the configuration section of
// cmd/ladder/README.md.
const usageTable = `| variable | default | description |
| --- | --- | --- |
{{range .}}| ` + "`{{usage_key .}}`" + ` | {{if usage_default .}}` + "`{{usage_default .}}`" + `{{end}} | {{usage_description .}} |
{{end}}`

// configCmd is `ladder config`: print the effective configuration after
// checking it, or (--usage) the table of every variable.
func configCmd(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("config", "config [--usage]", stderr)
	usage := f.Bool("usage", false, "print the Markdown table of every LADDER_* variable")
	if err := f.Parse(args); err != nil {
		return errUsageShown
	}
	if *usage {
		return envconfig.Usagef("ladder", &Config{}, stdout, usageTable)
	}
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	for _, check := range []func() error{cfg.validateLog, cfg.Config.Validate, cfg.validateForwarder} {
		if err := check(); err != nil {
			return usageError{err}
		}
	}
	if _, err := cfg.ladder(); err != nil {
		return usageError{err}
	}
	if err := envconfig.CheckDisallowed("ladder", &cfg); err != nil {
		fmt.Fprintf(stderr, "warning: %v\n", err)
	}
	for _, w := range cfg.Config.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if err := envconfig.Usagef("ladder", &cfg, tw, "{{range .}}{{usage_key .}}\t{{.Field}}\n{{end}}"); err != nil {
		return err
	}
	return tw.Flush()
}
