# trap on EXIT: runs on exit, keeps the exit status, sees variables, can be reset; subshells too.
# status: 10
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-trap-exit.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99

(trap 'echo "subshell exit trap"' EXIT; echo "in subshell")
echo "after subshell"
(trap 'echo "trap sees status $?"' EXIT; exit 6)
echo "subshell status $?"
(trap 'echo never' EXIT; trap - EXIT; echo "trap removed")
sh -c 'trap "echo child trap" EXIT; echo child body'
echo "child status $?"
trap 'echo "cleanup: removing dir with $(ls | wc -l) files"; cd /; rm -rf "$T"' EXIT
touch a b c
state=finished
trap 'echo "exit trap: state=$state"; cd /; rm -rf "$T"' EXIT
trap
echo "about to exit"
exit 10
