# exec redirections: opening, duplicating, saving and restoring descriptors, read-write descriptors.
# status: 23
mkdir -p /tmp
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3 || exit 98
T=/tmp/ush-exec-fds.$$
rm -rf "$T" && mkdir "$T" && cd "$T" || exit 99
trap 'cd /; rm -rf "$T"' EXIT

exec 3> out3
echo "via fd 3" >&3
echo "again via 3" 1>&3
exec 3>&-
cat out3
echo "written after close: $(echo x 2>/dev/null >&3; echo $?)"
printf 'first\nsecond\nthird\n' > in
exec 4< in
read -r a <&4
read -r b <&4
echo "read from fd 4: $a, $b"
cat <&4
exec 4<&-
exec 6>&1
exec > captured
echo "this goes to the file"
ls captured
exec 1>&6 6>&-
echo "stdout restored"
cat captured
exec 5<> rw
echo hello >&5
exec 5>&-
cat rw
exec 7>> out3
echo appended >&7
exec 7>&-
tail -n 1 out3
exec 8>&1
echo "dup of stdout" >&8
exec 8>&-
{ echo "block to fd 9"; } 9>nine >&9
cat nine
exec 2> errs
ls /no/such/path
echo "stderr went to a file: $(wc -l < errs) line"
exec 2>/dev/null
exit 23
