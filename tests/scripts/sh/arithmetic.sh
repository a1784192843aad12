# Arithmetic expansion $((...)): precedence, division, modulo, comparisons, bit ops, bases.
# status: 9
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-arithmetic.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

echo $((1 + 2 * 3)) $(((1 + 2) * 3)) $((10 - 4 - 3))
echo $((17 / 5)) $((17 % 5)) $((-17 / 5)) $((-17 % 5))
echo $((1 < 2)) $((2 < 1)) $((3 == 3)) $((3 != 3)) $((5 >= 5)) $((4 <= 3))
echo $((1 && 0)) $((1 || 0)) $((!0)) $((!7))
echo $((0xff)) $((010)) $((0x10 + 010 + 10))
echo $((6 & 3)) $((6 | 3)) $((6 ^ 3)) $((~0)) $((1 << 10)) $((1024 >> 3))
echo $((2 > 1 ? 100 : 200)) $((0 ? 1 : 0 ? 2 : 3))
x=5
y=7
echo $((x * y)) $(($x + $y)) $((x += 2)) $x
echo $((x -= 10)) $((x *= -2)) $((x /= 3)) $((x %= 3))
i=0
i=$((i + 1)); i=$((i + 1)); i=$((i + 1))
echo "i=$i"
echo $((2147483647 + 1)) $((9223372036854775807))
echo $(( (1 + 2) * (3 + 4) / 7 ))
unset z
echo "unset counts as zero: $((z + 1))"
s=' 12 '
echo "spaces in a variable: $((s * 2))"
n=1
total=0
while [ $n -le 100 ]; do total=$((total + n)); n=$((n + 1)); done
echo "sum 1..100 = $total"
exit $((3 * 3))
