# Pathname expansion in a temp dir: *, ?, [...], [!...], dot files, no match, set -f, quoting.
# status: 14
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-globbing.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

touch a.txt b.txt c.log ab.txt .hidden 1.dat 22.dat
mkdir -p dir1/sub dir2
touch dir1/x.c dir1/y.c dir2/z.c dir1/sub/deep.c
echo *
echo *.txt
echo ?.txt
echo ??.txt
echo [ab].txt
echo [!a]*.txt
echo [0-9]*
echo */*.c
echo */*/*.c
echo dir*/
echo .*
echo no*match
echo "*.txt"
echo \*.txt
set -f
echo *.txt
set +f
pat='*.log'
echo $pat
echo "$pat"
for f in *.txt; do echo "file: $f"; done
n=0
for f in *; do n=$((n + 1)); done
echo "$n visible entries"
set -- *.dat
echo "$# dat files: $*"
ls -1 *.txt
ls -1d dir*
case a.txt in *.txt) echo "case uses patterns, not files" ;; esac
exit 14
