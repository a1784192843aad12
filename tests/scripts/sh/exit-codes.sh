# Exit statuses: false/true, exit N in a subshell, command not found (127), not executable (126),
# && and || chains, if/while statuses, sh -c statuses, statuses above 255 wrap.
# status: 3
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-exit-codes.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

false; echo "false -> $?"
true; echo "true -> $?"
(exit 3); echo "subshell exit 3 -> $?"
(exit 255); echo "subshell exit 255 -> $?"
sh -c 'exit 300'; echo "exit 300 wraps -> $?"
no_such_command_here 2>/dev/null; echo "not found -> $?"
printf 'echo hi\n' > notexec
chmod 644 notexec
./notexec 2>/dev/null; echo "not executable -> $?"
chmod 755 notexec
./notexec; echo "now executable -> $?"
printf '#!/bin/sh\nexit 17\n' > seventeen
chmod +x seventeen
./seventeen; echo "script with shebang -> $?"
false && echo no || echo "&& || chain -> $?"
true && false; echo "true && false -> $?"
if false; then :; fi; echo "if with false condition -> $?"
while false; do :; done; echo "while false -> $?"
f() { return 13; }
f; echo "function return -> $?"
! f; echo "negated -> $?"
x=$(exit 21); echo "assignment keeps substitution status -> $?"
grep -q nothing /dev/null; echo "grep no match -> $?"
grep -q root /no/such/file 2>/dev/null; echo "grep error -> $?"
test 1 -eq 2; echo "test false -> $?"
cat /no/such 2>/dev/null; echo "cat missing -> $?"
sh -c 'kill -TERM $$' 2>/dev/null; echo "killed by TERM -> $?"
(exit 3)
