# Applet checks for the guest (tests/tests/userland.rs boots it with mem=256M and checks each
# section's output). Sections start with "== NAME". Like a real init script, it mounts /proc
# itself when it is not there.
# status: 0
mkdir -p /tmp /proc
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
[ -e /proc/self ] || mount -t proc proc /proc
T=/tmp/applets.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
s() { echo "== $1"; }

s ls
mkdir d
touch d/b d/a d/c d/.dot
ls -1 d
ls -a d | tr '\n' ' '
echo
ls -ld d | cut -c1
s cat
printf 'x\ny\n' > f
cat f f
cat -n f
s cp
cp f g
cat g
cp -r d e
ls e | tr '\n' ' '
echo
s mv
mv g h
[ -e g ] || echo "g is gone"
cat h
mv e e2
ls -1d e*
s rm
rm h
rm -r e2
[ -e h ] || [ -e e2 ] || echo "removed"
rm -f nothing-here && echo "rm -f of nothing ok"
s mkdir
mkdir -p p/q/r
ls -d p/q/r
mkdir p 2>&1 | sed 's/^.*: //'
s ln
ln -s f sym
ln f hard
readlink sym
cat sym
stat -c '%h' f
s find
find d p | sort
find . -name 'b' -o -name r | sort
find . -type l
s grep
printf 'apple\nbanana\ncherry\n' > fruit
grep an fruit
grep -c a fruit
grep -v a fruit
grep -n '^c' fruit
grep -q missing fruit || echo "grep -q status $?"
s sed
sed 's/a/A/g' fruit
sed -n '2p' fruit
printf 'one two\n' | sed -E 's/(one) (two)/\2 \1/'
s awk
awk '{ print length($0), $0 }' fruit
echo "3 4" | awk '{ print $1 * $2 }'
awk 'BEGIN { for (i = 1; i <= 3; i++) s = s i; print s }'
s sort
sort -r fruit | tr '\n' ' '
echo
printf '10\n9\n100\n' | sort -n | tr '\n' ' '
echo
printf 'b\na\nb\n' | sort -u | tr '\n' ' '
echo
s head
seq 10 | head -n 3 | tr '\n' ' '
echo
s tail
seq 10 | tail -n 2 | tr '\n' ' '
echo
s wc
wc -l < fruit
printf 'hello' | wc -c
echo "a b  c" | wc -w
s od
printf 'AB\n' | od -An -c
printf 'AB\n' | od -An -tx1
s dd
seq 1 2000 > big
dd if=big of=copy bs=512 count=4 2> dd.err
head -n 2 dd.err
wc -c < copy
dd if=fruit of=part bs=1 skip=6 count=6 2> dd.err
cat part
echo
s tar
tar -cf a.tar d f
tar -tf a.tar | sort | tr '\n' ' '
echo
mkdir x
tar -xf a.tar -C x
ls x | tr '\n' ' '
echo
cmp f x/f && echo "extracted file matches"
tar -czf a.tgz fruit
rm fruit
tar -xzf a.tgz
cat fruit | head -n 1
s gzip
echo hello | gzip | gunzip
seq 1 1000 > nums
gzip nums
[ -e nums ] || echo "nums replaced by nums.gz"
gunzip nums.gz
tail -n 1 nums
gzip -c nums | gzip -dc | wc -l
zcat a.tgz | tar -tf -
s ps
ps
s kill
sleep 100 &
p=$!
kill $p
wait $p 2> wait.err
echo "killed sleep: $?"
kill -0 $$ && echo "kill -0 on self: ok"
kill -l 9
kill -l 15
s sleep
b=$(date +%s)
sleep 1
e=$(date +%s)
echo "$((e - b))"
s date
date +%Y
date -u -d @0 +%Y-%m-%dT%H:%M:%S
s uname
uname -s
uname -m
uname -r
s proc-version
cat /proc/version
s mount
mount
s free
free
s env
env | grep -E '^(HOME|TERM)=' | sort
env -i A=1 B=two env
s true-false
true
echo "true $?"
false
echo "false $?"
s test
test -d / && echo "/ is a directory"
[ -x /bin/busybox ] && echo "busybox is executable"
[ 2 -gt 1 ] && [ abc != abd ] && echo "comparisons"
test -e /no/such || echo "missing file $?"
s end
cd /
rm -rf "$T"
echo done
