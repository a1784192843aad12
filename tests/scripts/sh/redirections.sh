# Redirections: >, >>, <, 2>&1, 2>FILE, >&2, noclobber, redirections on compound commands.
# status: 2
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-redirections.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

echo one > f
echo two >> f
echo three >>f
cat < f
wc -l < f
echo replaced > f
cat f
{ echo to-out; echo to-err >&2; } > both 2>&1
cat both
{ echo out-only; echo err-only >&2; } > out 2> err
echo "out: $(cat out) / err: $(cat err)"
ls /no/such/file 2>/dev/null
echo "ls status $?"
ls /no/such/file > msg 2>&1
[ -s msg ] && echo "error message captured"
echo before 2>&1 >/dev/null
for i in 1 2 3; do echo "line $i"; done > loop.out
cat loop.out
while read -r l; do echo "<$l>"; done < loop.out
set -C
echo clobbered 2>/dev/null > f
echo "noclobber write status $?"
cat f
echo forced >| f
cat f
set +C
: > empty
[ -e empty ] && [ ! -s empty ] && echo "empty file created"
cat <<EOF2 > hd
from a here-document
EOF2
cat hd
exec 2>/dev/null
ls /nowhere
exit 2
