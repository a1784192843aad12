# Pipelines: data flows left to right, the status is the last command's, `!` negates it.
# status: 0
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-pipelines.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

printf 'pear\napple\nfig\napple\nkiwi\n' | sort | uniq | tr a-z A-Z
printf 'b 2\na 1\nc 3\n' | sort -k2 -n -r | cut -d' ' -f1 | tr -d '\n'
echo
echo hello world | tr ' ' '\n' | wc -l
seq 1 100 | grep 7 | wc -l
seq 1 5 | sed 's/^/n=/' | tail -n 2 | head -n 1
echo abc | rev | tee copy | tr a-c x-z
cat copy
true | false
echo "true|false -> $?"
false | true
echo "false|true -> $?"
! false | false
echo "! ...|false -> $?"
seq 1 20000 | head -n 3
echo "head closed the pipe early -> $?"
yes y | head -n 4 | tr -d '\n'
echo
exit 0
