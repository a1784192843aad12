# Command substitution: $(...), backticks, nesting, trailing newlines, status of the substitution.
# status: 8
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-command-substitution.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

a=$(echo hello)
b=`echo world`
echo "$a $b"
echo "nested: $(echo outer $(echo inner $(echo innermost)))"
echo "backticks nested: `echo a \`echo b\``"
x=$(printf 'trailing\n\n\n')
echo "[$x]"
y=$(printf 'inner\n\nnewlines kept\n')
echo "[$y]"
echo "words: $(echo one; echo two)"
set -- $(echo split into four words)
echo "$# words, third is $3"
n=$(echo 5)
echo "arithmetic with substitution: $(( $(echo 6) * n ))"
v=$(exit 3)
echo "status of assignment from substitution: $?"
v=$(false; echo after-false)
echo "$v"
echo "$(echo 'single quotes $a inside')"
echo "$(echo "double quotes $a inside")"
echo "case in subst: $(case $a in hel*) echo yes;; esac)"
files=$(for i in 1 2 3; do printf 'f%s ' "$i"; done)
echo "loop output: $files"
echo "$(cd /; pwd) and subshell cd does not leak"
[ "$(pwd)" = "$T" ] && echo "still in the temp dir"
echo "length of output: $(echo abcdef | wc -c)"
exit 8
