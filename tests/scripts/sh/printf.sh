# printf: conversions, widths, precision, escapes, %b, reused format, missing arguments.
# status: 19
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-printf.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

printf '%s\n' hello
printf '%s-%s\n' a b c d
printf '[%5s][%-5s][%.2s]\n' ab ab abcdef
printf '%d %i %05d %+d %-4d|\n' 42 -7 42 5 3
printf '%x %X %o %#x %#o\n' 255 255 8 255 8
printf '%c%c%c\n' abc def ghi
printf '100%%\n'
printf 'tab\there\n'
printf 'octal \101\102\n'
printf '%b\n' 'escape\tin\targ'
printf '%s|' "with spaces" "" last
printf '\n'
printf '%d %s\n' 1
printf '%s\n'
printf 'no newline'
printf '\n'
printf '%3d|%-3d|%03d\n' 7 7 7
printf '%.3d\n' 5
printf '%s\n' "quote \"inside\""
v=$(printf '%s=%d' count 12)
echo "$v"
printf '%5.1s|\n' xyz
printf '%d\n' 0x1f 010
exit 19
