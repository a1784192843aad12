# sh -c: $0 and positional arguments, quoting, status, sh -s reading commands from stdin, nesting.
# status: 13
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-sh-c.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

sh -c 'echo "0=$0 1=$1 2=$2 #=$#"' zero one "two words"
sh -c 'echo "no args: $# $0"'
sh -c 'for a; do echo "arg: $a"; done' name a "b c" d
sh -c 'exit 42'
echo "status $?"
sh -c 'echo "$1" | tr a-z A-Z' x shouting
echo 'echo "from stdin with $# args: $*"' | sh -s p q r
printf 'x=4\necho $((x * x))\n' | sh
sh -c 'sh -c "echo nested \$0" inner-zero'
v=outer
sh -c 'echo "unexported: [$v]"'
export v
sh -c 'echo "exported: [$v]"'
w=once sh -c 'echo "prefix assignment: [$w]"'
echo "not set afterwards: [$w]"
sh -c 'mkdir sub && cd sub && pwd | sed "s|^$1|T|"' x "$T"
printf 'echo file script $1\nexit 4\n' > script
sh script arg
echo "script status $?"
sh -c ': ; false'
echo "last command decides: $?"
sh -c 'exit 13'
