# set -e: exits on a failing simple command, but not in conditions, && / || lists, or after !.
# status: 1
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-set-e.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

(set -e; echo a; false; echo "not reached")
echo "subshell stopped with $?"
(set -e; if false; then echo no; fi; echo "if condition is exempt")
(set -e; false || echo "|| is exempt")
(set -e; false && echo no; echo "&& left side is exempt")
(set -e; ! true; echo "! is exempt")
(set -e; while false; do :; done; echo "while condition is exempt")
(set -e; x=$(false); echo "not reached after failing assignment")
echo "assignment from failing substitution: $?"
(set -e; f() { false; echo "in function, not reached"; }; f; echo "not reached")
echo "function: $?"
(set -e; f() { false; echo "function body continues"; }; f || echo "called in || list")
(set -e; false | true; echo "pipeline status is the last command's")
(set -e; sh -c 'exit 4'; echo no)
echo "child status propagates: $?"
(set -e; set +e; false; echo "set +e turns it off")
set -e
echo "top level"
false
echo "not reached"
exit 0
