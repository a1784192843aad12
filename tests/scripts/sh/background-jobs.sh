# Background jobs: &, $!, wait, wait PID with exit statuses, killing a background job.
# status: 12
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-background-jobs.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

(sleep 0.2; exit 3) &
p1=$!
(exit 5) &
p2=$!
sh -c 'exit 7' &
p3=$!
wait $p2
echo "second job exited $?"
wait $p1
echo "first job exited $?"
wait $p3
echo "third job exited $?"
for i in 1 2 3; do
    (sleep 0.$i; echo "job $i" > out.$i) &
done
wait
echo "wait with no operands: $?"
cat out.1 out.2 out.3
sleep 10 &
p=$!
kill $p
wait $p 2>/dev/null
echo "killed job status $?"
sleep 10 &
p=$!
kill -9 $p
wait $p 2>/dev/null
echo "SIGKILLed job status $?"
{ echo grouped; false; } > grouped.out &
wait $!
echo "group status $? output $(cat grouped.out)"
echo start > order
(sleep 0.3; echo late >> order) &
echo early >> order
wait
cat order
[ -n "$!" ] && echo "\$! is set"
exit 12
