# Functions: arguments, return statuses, locals, recursion, redefinition, scope of variables.
# status: 4
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-functions.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

greet() {
    echo "hello $1 ($# args)"
}
greet alice
greet "bob smith" extra
fact() {
    if [ "$1" -le 1 ]; then
        echo 1
    else
        echo $(( $1 * $(fact $(( $1 - 1 ))) ))
    fi
}
echo "fact 10 = $(fact 10)"
fib() {
    local n=$1 a=0 b=1 t
    while [ "$n" -gt 0 ]; do
        t=$((a + b)); a=$b; b=$t; n=$((n - 1))
    done
    echo "$a"
}
echo "fib 20 = $(fib 20)"
is_even() { return $(( $1 % 2 )); }
for i in 1 2 3 4; do
    if is_even "$i"; then echo "$i even"; else echo "$i odd"; fi
done
g=global
scope() {
    local g=local
    h=set-in-function
    echo "inside: $g"
}
scope
echo "outside: $g $h"
status() { return "$1"; }
status 42
echo "returned $?"
f() { echo first; }
f
f() { echo second; }
f
args() {
    for a in "$@"; do printf '[%s]' "$a"; done
    echo
}
args "a b" c "" d
set -- outer1 outer2
inner() { echo "inner sees $1"; }
inner changed
echo "caller keeps $1 $2"
unset -f f
f 2>/dev/null || echo "f is gone ($?)"
compose() { "$@" | tr a-z A-Z; }
compose echo piped through
status 4
