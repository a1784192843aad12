# read from a pipe: the pipeline's last part runs in a subshell, grouping keeps the value,
# IFS splitting, read -r, several reads from one pipe, read at end of input.
# status: 16
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-read-pipe.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

echo "a b c d" | { read -r x y rest; echo "x=$x y=$y rest=$rest"; }
v=before
echo after | read -r v
echo "after the pipeline: v=$v"
printf 'l1\nl2\nl3\n' | { read -r one; read -r two; echo "$two then $one"; cat; }
echo "k1=v1" | { IFS== read -r key val; echo "key=$key val=$val"; }
echo '  padded  ' | { read -r p; echo "[$p]"; }
printf 'no more' | { read -r a; echo "status $? value [$a]"; }
: | { read -r z; echo "empty input: status $? value [$z]"; }
seq 1 3 | while read -r n; do echo "square $((n * n))"; done
r=$(printf 'x y\n' | { read -r a b; echo "$b-$a"; })
echo "from substitution: $r"
printf 'back\\slash\n' | { read -r s; echo "$s"; }
printf 'one\ntwo\n' > file
{ read -r first; read -r second; } < file
echo "from a file group: $first $second"
printf '%s\n' 10 20 30 | { s=0; while read -r n; do s=$((s + n)); done; echo "total $s"; }
exit 16
