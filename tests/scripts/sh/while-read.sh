# while read: lines from files, IFS field splitting, read -r, the last line without a newline.
# status: 7
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-while-read.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/usr/sbin:/bin/false\nbob:x:1000:100:Bob B:/home/bob:/bin/sh\n' > passwd
while IFS=: read -r user pw uid gid gecos home shell; do
    echo "user=$user uid=$uid home=$home shell=$shell gecos=[$gecos]"
done < passwd
count=0
while read -r line; do
    count=$((count + 1))
done < passwd
echo "lines: $count"
printf 'a\\tb\nc\\\nd\n' > backslashes
while read -r l; do echo "raw: $l"; done < backslashes
while read l; do echo "cooked: $l"; done < backslashes
printf 'no newline at end' > partial
while read -r l || [ -n "$l" ]; do echo "got: $l"; done < partial
printf '  lead and trail  \n' > spaces
while read -r l; do echo "[$l]"; done < spaces
while IFS= read -r l; do echo "[$l]"; done < spaces
printf 'one two three four\n' | while read -r first rest; do echo "first=$first rest=$rest"; done
i=0
while [ $i -lt 3 ]; do
    echo "iteration $i"
    i=$((i + 1))
done
printf '3\n1\n2\n' | sort -n | while read -r n; do printf '%s;' "$n"; done
echo
exit 7
