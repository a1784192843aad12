# Loops: for over words and "$@", while, until, break, continue, break N, nested loops, loop output.
# status: 17
# args: alpha beta delta
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-loops.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

for w in one two three; do printf '%s,' "$w"; done
echo
for a in "$@"; do echo "arg <$a>"; done
for a; do printf '(%s)' "$a"; done
echo
i=0
until [ $i -ge 3 ]; do echo "until $i"; i=$((i + 1)); done
for n in 1 2 3 4 5 6 7 8 9 10; do
    [ $((n % 2)) -eq 0 ] && continue
    [ $n -gt 7 ] && break
    printf '%s ' "$n"
done
echo
for i in 1 2 3; do
    for j in a b c; do
        [ "$j" = c ] && continue 2
        [ "$i" = 3 ] && break 2
        printf '%s%s ' "$i" "$j"
    done
    echo never
done
echo
for x in $(seq 3 -1 1); do printf '%s..' "$x"; done
echo liftoff
for f in; do echo never; done
echo "empty list ok"
n=0
while :; do n=$((n + 1)); [ $n -eq 5 ] && break; done
echo "infinite loop broken at $n"
for i in 1 2 3; do echo "line $i"; done | tail -n 1
count=0
for i in $(seq 1 200); do count=$((count + i)); done
echo "sum $count"
exit 17
