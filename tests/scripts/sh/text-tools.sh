# Text tools in scripts: sed, awk, cut, tr, sort, uniq, grep, head, tail, wc, tee, xargs, od.
# status: 25
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-text-tools.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

cat > data <<END
name,qty,price
apple,3,0.5
pear,10,0.25
fig,1,2.0
apple,2,0.5
END
sed -n '2,$p' data | cut -d, -f1 | sort | uniq -c | sed 's/^ *//'
awk -F, 'NR > 1 { s += $2 * $3 } END { printf "total %.2f\n", s }' data
awk -F, 'NR > 1 && $2 > 2 { print $1 }' data
grep -c apple data
grep -n '^f' data
grep -v , data || echo "grep -v found nothing: $?"
sed 's/,/ | /g; 1d' data | head -n 2
sed -e '/pear/s/10/ten/' -e 's/apple/APPLE/2' data | tail -n 3
tr ',' '\t' < data | cut -f2 | sort -n | tail -n 1
wc -l < data
wc -c < data
printf 'b\na\nc\n' | sort -r | tr -d '\n'
echo
echo "x y z" | xargs -n 1 echo item
printf 'hello' | od -An -c | tr -s ' '
printf 'AB' | od -An -tx1
seq 5 | tee nums | awk '{ s += $1 } END { print "awk sum", s }'
paste -d+ -s nums
expr 6 \* 7
basename /a/b/c.txt .txt
dirname /a/b/c.txt
echo "MiXeD" | tr '[:upper:]' '[:lower:]'
exit 25
