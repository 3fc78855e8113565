//go:build race

package plan

// simTestScale sizes the simulations of the tests: the race detector makes
// them about twenty times slower.
const simTestScale = 0.15
