# test and [: files, strings, integers, negation, -a/-o, && / || combinations.
# status: 18
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-test-builtin.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

t() { if "$@"; then echo "yes: $*"; else echo "no:  $*"; fi; }
echo data > file
: > empty
mkdir dir
ln -s file link
ln -s missing dangling
chmod 755 file
t test -e file
t test -f file
t test -d dir
t test -f dir
t test -s file
t test -s empty
t test -e nonexistent
t test -L link
t test -h dangling
t test -e dangling
t test -x file
t test -r file
t test -w file
t [ -z "" ]
t [ -n "" ]
t [ -n "x" ]
t [ abc = abc ]
t [ abc != abd ]
t [ "a b" = "a b" ]
t [ 10 -eq 10 ]
t [ 9 -lt 10 ]
t [ 10 -gt 9 ]
t [ -1 -le -1 ]
t [ 3 -ge 4 ]
t [ 5 -ne 5 ]
t [ ! -e nonexistent ]
t [ -f file -a -d dir ]
t [ -f dir -o -d dir ]
t [ x ]
t [ "" ]
t test
[ -d dir ] && [ -f file ] && echo "chained with &&"
[ -d file ] || echo "fallback with ||"
[ 1 -eq 2 ]
echo "status of a false test: $?"
[ 2 -lt 1 -o 1 -eq 1 ] && echo "or"
exit 18
