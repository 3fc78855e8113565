//go:build !race

package plan

// simTestScale sizes the simulations of the tests.
const simTestScale = 1.0
