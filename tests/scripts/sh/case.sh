# case: literal, alternatives, wildcards, bracket expressions, quoting, fall-through to *.
# status: 6
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-case.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

classify() {
    case $1 in
        "") echo "empty" ;;
        start|begin) echo "$1: start word" ;;
        *.txt) echo "$1: text file" ;;
        [0-9]|[0-9][0-9]) echo "$1: small number" ;;
        "*") echo "a literal star" ;;
        [!a-z]*) echo "$1: not lower-case first" ;;
        ?) echo "$1: one char" ;;
        *) echo "$1: other" ;;
    esac
}
for w in start begin notes.txt 7 42 123 Hello x '*' words ""; do
    classify "$w"
done
pat='a*'
case abc in $pat) echo "pattern from variable matches" ;; esac
case abc in "$pat") echo "no" ;; *) echo "quoted pattern is literal" ;; esac
case x in
    x) echo "first match wins" ;;
    x) echo "never" ;;
esac
case nothing in
    something) echo never ;;
esac
echo "no match -> $?"
v=$(case yes in y*) echo matched-in-subst ;; esac)
echo "$v"
exit 6
