# Nested subshells: variables, cd, traps, exit and umask do not leak; statuses propagate; grouping.
# status: 24
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-subshells.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

x=outer
(x=inner1; (x=inner2; echo "level 2: $x"); echo "level 1: $x")
echo "level 0: $x"
{ x=group; }
echo "after a group: $x"
mkdir d
(cd d && echo "in subshell: ${PWD##*/}")
echo "parent: ${PWD#"$T"}."
(((exit 4)); echo "inner status $?"; exit 5)
echo "outer status $?"
( ( ( echo deep ) ) )
echo "$( (echo sub-in-subst) )"
echo "$( ( (echo 3 levels) | tr a-z A-Z ) )"
(exit 7) && echo no || echo "failed subshell: $?"
(umask 077; touch private)
umask 022
touch public
stat -c '%a %n' private public
y=0
for i in 1 2 3; do (y=$i); done
echo "loop subshells leave y=$y"
[ "$(echo $$)" = "$$" ] && echo "\$\$ is the same in a substitution"
(echo "subshell output"; false) | cat
echo "pipeline status $?"
v=$( (echo a; (echo b; (echo c))) | tr '\n' ' ')
echo "$v"
( set -- in sub; echo "args in subshell: $*" )
echo "args in parent: $#"
(exit 24)
