# Variables: assignment, quoting, export to children, unset, readonly, special parameters, IFS.
# status: 26
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-variables.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

a=1 b="two words" c='$literal'
echo "$a|$b|$c"
echo '$a stays' "\$a escaped" "$a expanded"
d="$b and more"
echo "$d"
e=$b
echo "assignment does not split: $e"
unset a
echo "unset: [${a}]"
export E1=exported
N1=plain
sh -c 'echo "child sees [$E1] [$N1]"'
readonly R=fixed
(R=changed) 2>/dev/null
echo "readonly assignment fails: $?, R=$R"
f=one; f=$f-two; f="$f-three"
echo "$f"
IFS=-
set -- $f
echo "split on -: $# fields"
unset IFS
list="a   b    c"
echo $list
echo "$list"
echo "pid is a number: $(case $$ in *[!0-9]*) echo no ;; *) echo yes ;; esac)"
false
echo "\$? is $?"
echo "\$- contains no i: $(case $- in *i*) echo interactive ;; *) echo ok ;; esac)"
long_name_with_digits_123=ok
echo "$long_name_with_digits_123"
echo "${a:-x}${b:+y}"
echo "concatenation: ${b}s ${b}_x"
exit 26
