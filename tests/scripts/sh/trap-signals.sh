# trap on signals: kill -USR1 $$ runs the handler, ignored signals, reset to default, TERM handler exiting.
# status: 11
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-trap-signals.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

got=0
trap 'got=$((got + 1)); echo "USR1 handler run $got"' USR1
kill -USR1 $$
echo "after first signal: got=$got"
kill -USR1 $$
kill -s USR1 $$
echo "after three signals: got=$got"
trap 'echo "USR2 handler"' USR2
kill -USR2 $$
trap '' USR2
kill -USR2 $$
echo "USR2 ignored"
trap - USR1
sh -c 'kill -USR1 $$; echo never' 2>/dev/null
echo "child killed by USR1: status $?"
sh -c 'trap "echo child got HUP; exit 3" HUP; kill -HUP $$; echo never'
echo "child HUP handler exited $?"
trap 'echo "TERM handler"; exit 11' TERM
kill -TERM $$
echo "not reached"
exit 1
