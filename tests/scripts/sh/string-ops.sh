# Parameter expansion: ${x#pat} ${x##pat} ${x%pat} ${x%%pat} ${#x}, defaults, alternatives, errors.
# status: 15
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-string-ops.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

path=/usr/local/lib/libfoo.so.1.2
echo "${path#*/}"
echo "${path##*/}"
echo "${path%/*}"
echo "${path%%.*}"
echo "${path%.*}"
echo "${path#/usr}"
echo "${path#nomatch}"
echo "length ${#path}"
empty=
echo "length of empty ${#empty}"
unset nothing
echo "[${nothing:-default}] [${nothing-dash}] [${empty:-colon}] [${empty-nocolon}]"
echo "[${nothing:=assigned}] now [$nothing]"
echo "[${path:+alternative}] [${empty:+alt}] [${empty+set-but-empty}]"
(: "${unsetvar:?custom message}") 2>/dev/null
echo "error expansion status $?"
file=archive.tar.gz
echo "base ${file%%.*} ext ${file#*.} last ${file##*.}"
v=aaabbbccc
echo "${v#a*b}" "${v##a*b}" "${v%b*c}" "${v%%b*c}"
star='*'
echo "${v#"$star"}" "${v#$star}"
greeting="hello world"
echo "${#greeting} chars"
word=abcdef
echo "${word#??}" "${word%???}"
n=12345
echo "digits ${#n}"
set -- one two three
echo "${#} args, ${#1} letters in the first"
x=prefix_value
echo "${x#prefix_}"
IFS=:
set -- $(echo a:b:c)
echo "$# fields: $1 $2 $3"
exit 15
