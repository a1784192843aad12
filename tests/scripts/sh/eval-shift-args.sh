# eval, shift and positional parameters: $#, $1.., "$@" vs "$*", set --, shift N, IFS joining.
# status: 20
# args: first second third fourth fifth
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-eval-shift-args.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

echo "$# args: $1 $2 ... $5; script ${0##*/}"
shift
echo "after shift: $# args, first=$1"
shift 2
echo "after shift 2: $*"
shift 5 2>/dev/null
echo "shift too far: status $? still $# args"
set -- "a b" c "d  e"
echo "$# args"
for x in "$@"; do printf '<%s>' "$x"; done
echo
for x in $@; do printf '<%s>' "$x"; done
echo
for x in "$*"; do printf '<%s>' "$x"; done
echo
IFS=,
echo "joined: $*"
IFS=' 	
'
set --
echo "cleared: $#"
set -- 1 2 3 4 5 6 7 8 9 10 11
echo "tenth is ${10}, eleventh is ${11}, \$10 is $10"
cmd='echo evaluated'
eval "$cmd"
name=color
eval "$name=blue"
echo "color=$color"
eval "echo \$$name"
for i in 1 2 3; do eval "var_$i=\$((i * 10))"; done
echo "$var_1 $var_2 $var_3"
eval 'f() { echo "function defined by eval with $# args"; }'
f x y
eval "set -- x y z"
echo "positional set by eval: $*"
s='a;b'
eval "echo '$s'"
eval 'exit 20'
echo never
