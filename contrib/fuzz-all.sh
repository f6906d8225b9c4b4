#!/bin/sh
# Runs every fuzz target of the tree for a short time (default 10s each):
# the seed corpus and a brief exploration, so a regression in a parser of
# peer input fails `make test`.
set -eu
t=${1:-10s}
status=0
for f in $(grep -rl --include='*_test.go' '^func Fuzz' internal cmd 2>/dev/null | sort); do
	dir=$(dirname "$f")
	for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		echo "fuzz ./$dir $name ($t)"
		if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$t" "./$dir" >/tmp/postern-fuzz.$$ 2>&1; then
			cat /tmp/postern-fuzz.$$
			status=1
		fi
	done
done
rm -f /tmp/postern-fuzz.$$
exit $status
